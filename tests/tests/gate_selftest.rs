//! A test binary that dies: `scripts/test.sh` runs it (`--ignored`) to check that its gate turns
//! a crashing test binary (segfault, abort: no "N failed" line is ever printed) into a failure.

#[test]
#[ignore = "gate self-test: scripts/test.sh runs it with --ignored and expects the run to fail"]
fn aborts_the_whole_test_binary() {
    std::process::abort();
}
