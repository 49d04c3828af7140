//! Short-video transcoding as commerce sees it: `media::transcode` behind commerce's
//! `VideoTranscoder`, its errors mapped to commerce's `VideoFailure`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use commerce::{VideoFacts, VideoFailure, VideoTranscoder};
use media::transcode::{self, Limits, TranscodeError, VideoInfo};

pub(crate) struct FfmpegTranscoder;

fn limits(max_duration_ms: i64) -> Limits {
    Limits {
        max_duration_ms,
        ..Limits::default()
    }
}

fn facts(info: VideoInfo) -> VideoFacts {
    VideoFacts {
        duration_ms: info.duration_ms,
        width: info.width,
        height: info.height,
        has_audio: info.has_audio,
    }
}

fn failure(e: TranscodeError) -> VideoFailure {
    match e {
        TranscodeError::Unreadable(_)
        | TranscodeError::NoVideo
        | TranscodeError::Unsupported(_) => VideoFailure::Unsupported(e.to_string()),
        TranscodeError::Undecodable(_) => VideoFailure::Undecodable(e.to_string()),
        TranscodeError::TooLong {
            duration_ms,
            max_ms,
        } => VideoFailure::TooLong {
            duration_ms,
            max_ms,
        },
        TranscodeError::TooShort { duration_ms } => VideoFailure::TooShort { duration_ms },
        TranscodeError::TimedOut(_) => VideoFailure::TimedOut,
        TranscodeError::Cancelled => VideoFailure::Cancelled,
        TranscodeError::EncoderMissing(_) | TranscodeError::Failed(_) | TranscodeError::Io(_) => {
            VideoFailure::Internal(e.to_string())
        }
    }
}

impl VideoTranscoder for FfmpegTranscoder {
    fn probe(&self, input: &Path, max_duration_ms: i64) -> Result<VideoFacts, VideoFailure> {
        transcode::probe(input, &limits(max_duration_ms))
            .map(facts)
            .map_err(failure)
    }

    fn transcode(
        &self,
        input: &Path,
        mp4: &Path,
        cover: &Path,
        max_duration_ms: i64,
        cancel: &AtomicBool,
    ) -> Result<VideoFacts, VideoFailure> {
        transcode::transcode(input, mp4, cover, &limits(max_duration_ms), cancel)
            .map(facts)
            .map_err(failure)
    }
}
