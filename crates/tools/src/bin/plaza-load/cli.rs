//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::Shape;

#[derive(Parser)]
#[command(
    name = "plaza-load",
    version,
    about = "Load generator and benchmark for Plaza (and the aiortc and Janus baselines)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Compare saved runs (--json files) and write the benchmark page and plot.
    Report(ReportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Plaza,
    /// benches/baselines/aiortc (speaks Plaza's protocol; decodes and re-encodes).
    Aiortc,
    /// benches/baselines/janus (Janus VideoRoom; its own WebSocket API).
    Janus,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Plaza => "plaza",
            Target::Aiortc => "aiortc",
            Target::Janus => "janus",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MediaKindArg {
    /// Stamped synthetic VP8/Opus packets: exact loss and latency.
    Synthetic,
    /// A real VP8 + Opus recording (benches/fixtures), for relays that decode.
    Fixture,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Which server to load.
    #[arg(long, value_enum, default_value = "plaza")]
    pub target: Target,
    /// Loopback port of the server (default: 18080 plaza, 18090 aiortc, 18188 janus).
    #[arg(long)]
    pub port: Option<u16>,
    /// Load a server that is already running at this WebSocket URL (needs --server-pid).
    #[arg(long, requires = "server_pid")]
    pub url: Option<String>,
    /// PID of that server, to read its CPU and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The plaza binary to start (default: `plaza` next to this executable).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Start the server with this command instead ("{port}" is replaced).
    #[arg(long)]
    pub server_cmd: Option<String>,
    /// The repository root (for the baselines' run.sh).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Plaza's media runtime threads (--media-threads).
    #[arg(long)]
    pub media_threads: Option<usize>,
    /// Plaza's HTTP workers (--http-workers).
    #[arg(long)]
    pub http_workers: Option<usize>,
    /// Where the server's output goes.
    #[arg(long, default_value = "target/plaza-load")]
    pub log_dir: PathBuf,

    /// Meetings: number of rooms.
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Meetings and ramp: participants per room, all publishing.
    #[arg(long)]
    pub per_room: Option<usize>,
    /// Webinar: publishers in the one room.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Webinar: participants that only watch.
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Ramp: participants added per step (measured after each step).
    #[arg(long)]
    pub ramp_step: Option<usize>,
    /// Ramp: participants at the last step.
    #[arg(long, default_value_t = 24)]
    pub ramp_max: usize,

    /// Measurement window (per ramp step).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Wait after the joins before measuring.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Head start of each room's first member before the others join.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    pub lead: Duration,
    /// Joins started per second.
    #[arg(long, default_value_t = 10.0)]
    pub join_rate: f64,
    /// A join with no media after this long counts as failed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub join_timeout: Duration,

    /// What publishers send.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub media: MediaKindArg,
    /// Where video.ivf and audio.ogg are (for --media fixture).
    #[arg(long, default_value = "benches/fixtures")]
    pub fixture_dir: PathBuf,
    /// Synthetic video bitrate, bit/s.
    #[arg(long, default_value_t = 1_500_000)]
    pub video_bitrate: u32,
    /// Synthetic video frame rate.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    #[arg(long)]
    pub no_audio: bool,
    #[arg(long)]
    pub no_video: bool,

    /// Name of the scenario in reports (default: derived from the shape).
    #[arg(long)]
    pub label: Option<String>,
    /// Write the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a PNG plot of CPU/packet and latency against participants (for a ramp).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,

    /// Exit 1 unless packets were forwarded in the (last) window.
    #[arg(long)]
    pub expect_forwarded: bool,
    /// Exit 1 unless loss in the (last) window is below this percentage.
    #[arg(long)]
    pub expect_max_loss: Option<f64>,
    /// Exit 1 if any join failed.
    #[arg(long)]
    pub expect_no_failed_joins: bool,
}

impl RunArgs {
    pub fn shape(&self) -> Shape {
        if let Some(step) = self.ramp_step {
            Shape::Ramp {
                per_room: self.per_room.unwrap_or(4),
                step,
                max: self.ramp_max,
            }
        } else if self.subscribers.is_some() || self.publishers.is_some() {
            Shape::Webinar {
                publishers: self.publishers.unwrap_or(1),
                subscribers: self.subscribers.unwrap_or(10),
            }
        } else {
            Shape::Meeting {
                rooms: self.rooms.unwrap_or(1),
                per_room: self.per_room.unwrap_or(4),
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Summaries written by --json.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The Markdown page to write (its text outside the generated block is kept).
    #[arg(long)]
    pub out: PathBuf,
    /// The ramp plot to write (PNG), linked from the page.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The command that produced the runs, quoted on the page.
    #[arg(long, default_value = "")]
    pub command: String,
    /// Criterion's output directory (target/criterion): adds the micro-benchmarks.
    #[arg(long)]
    pub criterion: Option<PathBuf>,
    /// A text file with instruction counts (callgrind) to quote under the micro-benchmarks.
    #[arg(long)]
    pub callgrind: Option<PathBuf>,
}
