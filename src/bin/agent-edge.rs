fn main() {
    eprintln!("agent-edge: being assembled");
}
