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

# Start the broker with the defaults (0.0.0.0:5555, data in ./data).
serve *args:
    cargo run --release --bin fila-server -- {{args}}

# Codec micro-benchmark: Enqueue and Delivery of 100 × 1 KiB, ns per message.
bench-wire:
    cargo bench -p fila-wire --bench codec

# Shard core benchmarks: deliver+ack and enqueue cost per message (in-memory storage).
bench-shard:
    cargo bench -p fila-shard --bench shard

# Authentication cost: handshake (SHA-256 + lookup among 10k keys) and per-request ACL checks.
bench-auth:
    cargo bench --bench auth

# Storage benchmarks on fjall (durability modes, group commit, tombstones).
bench-storage:
    cargo bench -p fila-shard --bench storage

# Fuzz the frame + body decoder (`cargo install cargo-fuzz` first); stable toolchain, no sanitizer.
fuzz seconds="600":
    cd wire/fuzz && cargo fuzz run decode -s none -- -max_total_time={{seconds}}

# Load test against a freshly built release server: the core workloads 3 runs each, the
# scheduling and scale workloads (fairness, throttle, lua, keys, shards, depth) one short run
# each (about 7 min); reports and SVG charts in target/fila-bench/.
# Extra flags go to fila-bench: `just bench --durability fsync`.
bench *args:
    cargo build --release --workspace --bin fila-server --bin fila-bench
    target/release/fila-bench all {{args}}

# The same workloads with tiny durations and one run (about a minute): checks the harness and the
# server end to end; the figures mean little.
bench-smoke:
    cargo build --release --workspace --bin fila-server --bin fila-bench
    target/release/fila-bench all --duration 1 --warmup 0.5 --runs 1 --json target/fila-bench/smoke.json --report target/fila-bench/smoke.md

# One scheduling or scale workload at full size, e.g. `just bench-one keys --key-counts 1000000`
# or `just bench-one depth --depth 1000000`.
bench-one workload *args:
    cargo build --release --workspace --bin fila-server --bin fila-bench
    target/release/fila-bench {{workload}} {{args}}
