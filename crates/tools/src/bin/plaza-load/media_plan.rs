//! What each synthetic publisher sends: its own module, since both the Plaza and the
//! Janus participants (`scenario`, `janus`) read it.

use std::sync::Arc;

use plaza_client::source::Fixture;
use plaza_client::VideoOptions;

/// What each publisher sends.
#[derive(Clone, Debug)]
pub struct MediaPlan {
    pub audio: bool,
    pub video: Option<VideoOptions>,
    pub fixture: Option<Arc<Fixture>>,
}

impl MediaPlan {
    pub fn none() -> Self {
        MediaPlan {
            audio: false,
            video: None,
            fixture: None,
        }
    }
}
