//! Who joins where and when: meetings (R rooms of P, everyone publishes), a webinar
//! (K publishers, N watchers in one room) or a ramp (meeting rooms filled step by step,
//! measured after each step). Joins are paced; the first member of each room joins
//! first and gets a head start, so every later member's time to first media is a true
//! join time (someone is already publishing when it connects).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use plaza_client::source::SentPacket;
use plaza_client::{OnPacket, OnSent, Participant, ParticipantOptions};

use crate::janus::{self, JanusMember};
use crate::measure::{Meter, StepResult};
pub use crate::media_plan::MediaPlan;
use crate::recorder::{lock, Part, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Plaza's protocol (Plaza itself and the aiortc baseline).
    Plaza,
    Janus,
}

#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub room: usize,
    pub publishes: bool,
}

#[derive(Clone, Debug)]
pub enum Shape {
    Meeting {
        rooms: usize,
        per_room: usize,
    },
    Webinar {
        publishers: usize,
        subscribers: usize,
    },
    Ramp {
        per_room: usize,
        step: usize,
        max: usize,
    },
}

impl Shape {
    /// Slots in join order, grouped in steps (one step unless ramping).
    pub fn steps(&self) -> Vec<Vec<Slot>> {
        match *self {
            Shape::Meeting { rooms, per_room } => {
                vec![(0..rooms * per_room)
                    .map(|i| Slot {
                        room: i / per_room.max(1),
                        publishes: true,
                    })
                    .collect()]
            }
            Shape::Webinar {
                publishers,
                subscribers,
            } => vec![(0..publishers + subscribers)
                .map(|i| Slot {
                    room: 0,
                    publishes: i < publishers,
                })
                .collect()],
            Shape::Ramp {
                per_room,
                step,
                max,
            } => {
                let all: Vec<Slot> = (0..max)
                    .map(|i| Slot {
                        room: i / per_room.max(1),
                        publishes: true,
                    })
                    .collect();
                all.chunks(step.max(1)).map(<[Slot]>::to_vec).collect()
            }
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Shape::Meeting { rooms, per_room } => format!("meeting {rooms}x{per_room}"),
            Shape::Webinar {
                publishers,
                subscribers,
            } => format!("webinar {publishers}->{subscribers}"),
            Shape::Ramp {
                per_room,
                step,
                max,
            } => format!("ramp to {max} by {step} (rooms of {per_room})"),
        }
    }
}

pub struct Plan {
    pub protocol: Protocol,
    pub url: String,
    pub shape: Shape,
    pub media: MediaPlan,
    pub ice_ips: Vec<IpAddr>,
    pub join_rate: f64,
    pub lead: Duration,
    pub settle: Duration,
    pub duration: Duration,
    pub quiet: bool,
}

/// A joined participant of either protocol, kept alive until the run ends.
enum Member {
    Plaza(Participant),
    Janus(JanusMember),
}

/// Packets the publishers sent while the window was open.
#[derive(Default)]
pub struct SentCounter {
    pub measuring: std::sync::atomic::AtomicBool,
    /// Per room: packets sent in the window, and members (receivers = members - 1).
    pub per_room: Mutex<Vec<(u64, u64)>>,
}

impl SentCounter {
    fn room_entry(&self, room: usize) {
        let mut v = lock(&self.per_room);
        if v.len() <= room {
            v.resize(room + 1, (0, 0));
        }
        v[room].1 += 1;
    }

    fn count(&self, room: usize) {
        if self.measuring.load(Ordering::Relaxed) {
            let mut v = lock(&self.per_room);
            if let Some(e) = v.get_mut(room) {
                e.0 += 1;
            }
        }
    }

    /// Deliveries a forwarding server owes for what was sent in the window.
    pub fn expected_deliveries(&self) -> u64 {
        lock(&self.per_room)
            .iter()
            .map(|(sent, members)| sent * members.saturating_sub(1))
            .sum()
    }

    pub fn start(&self) {
        for e in lock(&self.per_room).iter_mut() {
            e.0 = 0;
        }
        self.measuring.store(true, Ordering::Release);
    }

    pub fn stop(&self) {
        self.measuring.store(false, Ordering::Release);
    }
}

pub struct Runner {
    plan: Plan,
    pub recorder: Arc<Recorder>,
    pub sent: Arc<SentCounter>,
    /// With whether each expects media at once (the timelines of the others are not join times).
    members: Arc<Mutex<Vec<(Member, bool)>>>,
    pub join_errors: Arc<Mutex<Vec<String>>>,
    publishing_rooms: Vec<bool>,
    next_slot: AtomicU64,
}

impl Runner {
    pub fn new(plan: Plan, recorder: Arc<Recorder>) -> Self {
        Runner {
            plan,
            recorder,
            sent: Arc::new(SentCounter::default()),
            members: Arc::new(Mutex::new(Vec::new())),
            join_errors: Arc::new(Mutex::new(Vec::new())),
            publishing_rooms: Vec::new(),
            next_slot: AtomicU64::new(0),
        }
    }

    /// Runs every step: joins, settles, measures. Returns one result per step.
    pub async fn run(&mut self, meter: &mut Meter) -> Result<Vec<StepResult>> {
        let steps = self.plan.shape.steps();
        let mut results = Vec::new();
        let mut joined = 0usize;
        for (i, step) in steps.iter().enumerate() {
            self.join_step(step).await;
            joined += step.len();
            tokio::time::sleep(self.plan.settle).await;
            let label = if steps.len() > 1 {
                format!("step {}/{}: {joined} participants", i + 1, steps.len())
            } else {
                format!("{joined} participants")
            };
            let r = self.measure(meter, joined, &label).await?;
            results.push(r);
        }
        Ok(results)
    }

    async fn join_step(&mut self, step: &[Slot]) {
        // Leaders: the first member of a room that has no publisher yet.
        let mut leaders = Vec::new();
        let mut followers = Vec::new();
        for s in step {
            if self.publishing_rooms.len() <= s.room {
                self.publishing_rooms.resize(s.room + 1, false);
            }
            if s.publishes && !self.publishing_rooms[s.room] {
                self.publishing_rooms[s.room] = true;
                leaders.push((*s, false));
            } else {
                followers.push((*s, self.publishing_rooms[s.room]));
            }
        }
        let gap = Duration::from_secs_f64(1.0 / self.plan.join_rate.max(0.1));
        let bar = self.bar(step.len() as u64, "joining");
        let mut handles = Vec::new();
        for (slot, expects) in &leaders {
            handles.push(self.spawn_join(*slot, *expects));
            tokio::time::sleep(gap).await;
            bar.inc(1);
        }
        if !leaders.is_empty() {
            tokio::time::sleep(self.plan.lead).await;
        }
        for (slot, expects) in &followers {
            handles.push(self.spawn_join(*slot, *expects));
            tokio::time::sleep(gap).await;
            bar.inc(1);
        }
        for h in handles {
            let _ = h.await;
        }
        bar.finish_and_clear();
    }

    fn spawn_join(&self, slot: Slot, expects_media: bool) -> tokio::task::JoinHandle<()> {
        let index = self.next_slot.fetch_add(1, Ordering::Relaxed) as u32;
        let part = self.recorder.add_part(expects_media);
        self.sent.room_entry(slot.room);
        let media = if slot.publishes {
            self.plan.media.clone()
        } else {
            MediaPlan::none()
        };
        let recorder = Arc::clone(&self.recorder);
        let sent = Arc::clone(&self.sent);
        let members = Arc::clone(&self.members);
        let errors = Arc::clone(&self.join_errors);
        let protocol = self.plan.protocol;
        let url = self.plan.url.clone();
        let ice_ips = self.plan.ice_ips.clone();
        tokio::spawn(async move {
            let r = join_one(JoinArgs {
                protocol,
                url,
                slot,
                index,
                media,
                ice_ips,
                part: &part,
                recorder: &recorder,
                sent,
            })
            .await;
            match r {
                Ok(m) => lock(&members).push((m, expects_media)),
                Err(e) => {
                    part.failed.store(true, Ordering::Release);
                    lock(&errors).push(format!("{e:#}"));
                }
            }
        })
    }

    async fn measure(
        &self,
        meter: &mut Meter,
        participants: usize,
        label: &str,
    ) -> Result<StepResult> {
        let start = meter.begin().await?;
        self.recorder.start_window();
        self.sent.start();
        let bar = self.bar(self.plan.duration.as_secs().max(1), label);
        let t0 = Instant::now();
        while t0.elapsed() < self.plan.duration {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(t0.elapsed().as_secs());
        }
        self.sent.stop();
        let totals = self.recorder.end_window();
        bar.finish_and_clear();
        let publishers = self
            .plan
            .shape
            .steps()
            .concat()
            .iter()
            .take(participants)
            .filter(|s| s.publishes)
            .count();
        meter
            .end(
                start,
                totals,
                self.sent.expected_deliveries(),
                participants,
                publishers,
            )
            .await
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if self.plan.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(msg.to_string());
        bar
    }

    /// Each Plaza member's join timeline, for members that joined a room where someone
    /// already published (`Participant::timeline`): when each step from
    /// `join` to the first keyframe happened. Janus members have none.
    pub fn join_timelines(&self) -> Vec<Vec<(&'static str, Duration)>> {
        lock(&self.members)
            .iter()
            .filter_map(|(m, expects_media)| match m {
                Member::Plaza(p) if *expects_media => Some(p.timeline()),
                _ => None,
            })
            .collect()
    }

    /// Leaves: drops every member (their tasks stop, connections close).
    pub async fn shutdown(&self) {
        let members: Vec<(Member, bool)> = lock(&self.members).drain(..).collect();
        for (m, _) in members {
            match m {
                Member::Plaza(p) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), p.leave()).await;
                }
                Member::Janus(j) => drop(j),
            }
        }
    }
}

struct JoinArgs<'a> {
    protocol: Protocol,
    url: String,
    slot: Slot,
    index: u32,
    media: MediaPlan,
    ice_ips: Vec<IpAddr>,
    part: &'a Arc<Part>,
    recorder: &'a Arc<Recorder>,
    sent: Arc<SentCounter>,
}

async fn join_one(a: JoinArgs<'_>) -> Result<Member> {
    let on_packet = OnPacket(Arc::new(a.recorder.observer(a.part)));
    let ledger_hook = a.recorder.ledger.observer(a.index);
    let uses_ledger = a.media.fixture.is_some();
    let room = a.slot.room;
    let sent = a.sent;
    let on_sent = OnSent(Arc::new(move |p: &SentPacket<'_>| {
        sent.count(room);
        if uses_ledger {
            ledger_hook(p);
        }
    }));
    let name = format!("load{}", a.index);
    match a.protocol {
        Protocol::Plaza => {
            let mut o = ParticipantOptions::new(a.url, format!("load-{}", a.slot.room), name);
            o.audio = a.media.audio;
            o.video = a.media.video.clone();
            o.fixture = a.media.fixture.clone();
            o.ice_ips = a.ice_ips;
            o.track_stats = false;
            o.on_packet = Some(on_packet);
            o.on_sent = Some(on_sent);
            let p = Participant::join(o).await?;
            a.recorder.ledger.name_slot(&p.id, a.index);
            Ok(Member::Plaza(p))
        }
        Protocol::Janus => {
            let m = janus::join(janus::JoinSpec {
                url: &a.url,
                room: janus::FIRST_ROOM + a.slot.room as u64,
                name: &name,
                media: &a.media,
                ice_ips: &a.ice_ips,
                on_packet,
                on_sent: Some(on_sent),
            })
            .await?;
            if let Some(feed) = m.feed_id {
                a.recorder.ledger.name_slot(&feed.to_string(), a.index);
            }
            Ok(Member::Janus(m))
        }
    }
}
