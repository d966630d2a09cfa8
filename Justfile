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

# Load test against a freshly built release server: every workload, 3 runs each (about 5 min);
# reports in target/fila-bench/. Extra flags go to fila-bench: `just bench --durability fsync`.
bench *args:
    cargo build --release --bin fila-server -p fila-bench
    target/release/fila-bench all {{args}}

# The same workloads with tiny durations and one run (well under 60 s): checks the harness
# and the server end to end; the figures mean little.
bench-smoke:
    cargo build --release --bin fila-server -p fila-bench
    target/release/fila-bench all --duration 1 --warmup 0.5 --runs 1 --json target/fila-bench/smoke.json --report target/fila-bench/smoke.md
