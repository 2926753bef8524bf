# Sourced by the on-call scripts: finds the omega binary and asks for confirmation.
# OMEGA_BIN overrides; else `omega` on PATH; else this checkout's release or debug build.
omega_bin() {
    if [ -n "${OMEGA_BIN:-}" ]; then echo "$OMEGA_BIN"; return; fi
    if command -v omega >/dev/null 2>&1; then command -v omega; return; fi
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    for b in "$root/target/release/omega" "$root/target/debug/omega"; do
        if [ -x "$b" ]; then echo "$b"; return; fi
    done
    echo "omega binary not found: build it (cargo build --release) or set OMEGA_BIN" >&2
    exit 2
}

# confirm "question" — true when --yes was given (YES=1) or the operator answers y.
confirm() {
    if [ "${YES:-0}" = 1 ]; then return 0; fi
    if [ ! -t 0 ]; then
        echo "not a terminal: pass --yes to proceed without asking" >&2
        return 1
    fi
    read -r -p "$1 [y/N] " answer
    [ "$answer" = y ] || [ "$answer" = Y ]
}
