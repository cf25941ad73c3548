//! `federation-gateway`: filled in by its own issue.

fn main() {
    eprintln!("federation-gateway: not built yet");
    std::process::exit(2);
}
