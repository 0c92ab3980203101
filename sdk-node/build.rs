//! napi-rs's link setup (on macOS the addon leaves Node's symbols to be resolved at load time).

fn main() {
    napi_build::setup();
}
