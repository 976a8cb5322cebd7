//! The join timeline: how long each step from `join` to the first picture takes, for
//! participants joining a room where two others already publish. It prints the median
//! and the worst of each step (the table in docs/benchmarks.md comes from a release
//! run: `cargo test --release --test join_timeline -- --nocapture`, in the namespace)
//! and checks that every joiner got there: a keyframe from each publisher, first.

mod common;

use std::time::Duration;

use common::*;
use plaza_client::Participant;

const JOINERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_step_from_join_to_the_first_picture() {
    let server = server();
    let ann = join(&server, "timeline", "ann").await;
    let bob = join(&server, "timeline", "bob").await;
    wait_media_from(&ann, &[&bob], 5).await;
    wait_media_from(&bob, &[&ann], 5).await;

    let mut timelines: Vec<Vec<(&'static str, Duration)>> = Vec::new();
    for i in 0..JOINERS {
        let p: Participant = join(&server, "timeline", &format!("late{i}")).await;
        let tracks = wait_media_from(&p, &[&ann, &bob], 1).await;
        for t in tracks
            .iter()
            .filter(|t| t.kind == Some(plaza_protocol::MediaKind::Video))
        {
            assert_eq!(
                t.first_packet_keyframe,
                Some(true),
                "late{i}: the first video packet from {} starts a keyframe",
                t.publisher
            );
        }
        let timeline = p.timeline();
        assert!(
            timeline.iter().any(|(step, _)| *step == "first keyframe"),
            "late{i} saw a keyframe: {timeline:?}"
        );
        timelines.push(timeline);
        p.leave().await.expect("leaves");
    }

    println!("join timeline, {JOINERS} joiners into a room of 2 publishers (ms since join):");
    println!("| step | median | worst |");
    println!("|---|---|---|");
    for (step, _) in &timelines[0] {
        let mut at: Vec<f64> = timelines
            .iter()
            .filter_map(|t| t.iter().find(|(s, _)| s == step))
            .map(|(_, d)| d.as_secs_f64() * 1000.0)
            .collect();
        at.sort_by(f64::total_cmp);
        println!(
            "| {step} | {:.0} | {:.0} |",
            at[at.len() / 2],
            at[at.len() - 1]
        );
    }
}
