//! `dispatcher`: skeleton. The real binary lands with its own issue; until then it says so
//! and exits non-zero instead of pretending to work.

fn main() {
    eprintln!("dispatcher: not implemented yet in this build (see the project's open issues)");
    std::process::exit(2);
}
