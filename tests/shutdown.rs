//! Graceful shutdown of the real binary: SIGTERM with participants connected.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use plaza_client::{Participant, ParticipantOptions};

const ADMIN_KEY: &str = "admin-key-do-not-log-0123";
const TURN_SECRET: &str = "turn-secret-do-not-log-4567";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_tells_every_client_and_exits_cleanly_within_the_timeout() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ice-ip",
            "127.0.0.1",
            "--shutdown-timeout",
            "5s",
            "--log-level",
            "info,plaza=debug",
        ])
        .env_remove("RUST_LOG")
        // Secrets the log must never show, even at debug level.
        .env("PLAZA_ADMIN_API_KEY", ADMIN_KEY)
        .env("PLAZA_TURN_SECRET", TURN_SECRET)
        .env("PLAZA_TURN_URLS", "turn:127.0.0.1:3478")
        .stderr(Stdio::piped())
        .spawn()
        .expect("plaza starts");
    // The address is in the "listening" log line (port 0 picks a free one).
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening: http://").nth(1) {
                let _ = addr_tx.send(rest.split('/').next().unwrap_or_default().to_string());
            }
            lines.push(line);
        }
        lines
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listening line");
    let url = format!("ws://{addr}/ws");

    let ann = Participant::join(ParticipantOptions::new(&url, "bye", "Ann"))
        .await
        .unwrap();
    let bob = Participant::join(ParticipantOptions::new(&url, "bye", "Bob"))
        .await
        .unwrap();
    wait_media_from(&ann, &[&bob], 10).await;

    let start = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    for p in [&ann, &bob] {
        p.wait_error("server_shutdown", WAIT).await.unwrap();
        let code = p.wait_closed(WAIT).await.unwrap();
        assert_eq!(code, Some(1001), "close code 1001 (going away)");
    }
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "still running after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = start.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    println!("shutdown with 2 participants took {took:?}");
    let lines = log.join().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("stopped")),
        "last log line written: {:?}",
        lines.last()
    );
    for secret in [ADMIN_KEY, TURN_SECRET] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "a secret appears in the log"
        );
    }
}
