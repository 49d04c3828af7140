//! Exams: question bank, papers, attempts, grading, proctoring, plan submission and review,
//! e-signatures and certificates.
//!
//! Not built yet: a later issue fills this crate.
