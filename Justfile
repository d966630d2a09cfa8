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

# Replay the seeded shard simulation: `just sim 42` (one seed), `just sim 42 100000` (more steps).
sim seed="1" steps="20000":
    FILA_SIM_SEED={{seed}} FILA_SIM_STEPS={{steps}} cargo test -p fila-shard --test sim -- --nocapture
