//! `agenttally-collector`: command-line entry point.

fn main() {
    println!("agenttally-collector {}", agenttally::VERSION);
}
