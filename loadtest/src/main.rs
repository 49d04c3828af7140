//! Load generators for livecamp's benchmarks (docs/benchmarks.md).
//!
//! Not built yet: the hub, SFU and commerce issues add their generators and peer servers here.

fn main() {
    eprintln!("livecamp loadtest: no benchmark is implemented yet (see docs/benchmarks.md)");
    std::process::exit(2);
}
