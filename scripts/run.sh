#!/usr/bin/env bash
# Builds Plaza (release) and runs it with the web client: http://localhost:8080/?room=demo
# Any arguments go to `plaza` (see `plaza --help`, config.example.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin plaza
exec target/release/plaza "$@"
