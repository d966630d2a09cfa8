# Convenience recipes. README and CI use plain cargo; `cargo install just` to use these.

default: check test

# Formatting, lints (warnings are errors), then the whole test suite.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

test:
    cargo test --workspace

lint:
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all
