//! Replays the committed fuzz corpus (`fuzz/corpus/`) through both fuzz harnesses,
//! without instrumentation or network: whatever the fuzzer once found interesting (and
//! every input that once crashed, kept there) stays a regression test.

use std::path::Path;

fn replay(target: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("corpus file");
        // Each input through both harnesses: any bytes are valid input for either.
        let result = std::panic::catch_unwind(|| {
            plaza_protocol::fuzzing::decode(&data);
            plaza_protocol::fuzzing::signalling(&data);
        });
        assert!(result.is_ok(), "{} fails (see above)", file.display());
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn decode_corpus() {
    replay("decode");
}

#[test]
fn signalling_corpus() {
    replay("signalling");
}
