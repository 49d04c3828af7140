//! Teaching: courses, tasks, live classes, VOD, replays, check-in, in-class quizzes, evaluations
//! and learning records.
//!
//! Not built yet: a later issue fills this crate.
