//! include/pastry.h is generated from src/ffi by cbindgen: regenerate it in memory and fail
//! on any difference. `PASTRY_UPDATE_HEADER=1 cargo test --test c_header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_matches_the_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = root.join("include/pastry.h");
    if std::env::var_os("PASTRY_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let text = String::from_utf8_lossy(&generated);
    for define in [
        format!("#define PASTRY_ADDR_LEN {}", pastry::ffi::PASTRY_ADDR_LEN),
        format!("#define PASTRY_KEY_LEN {}", pastry::ffi::PASTRY_KEY_LEN),
        format!(
            "#define PASTRY_MAX_APP_MESSAGE {}",
            pastry::ffi::PASTRY_MAX_APP_MESSAGE
        ),
        format!(
            "#define PASTRY_VERSION_MAJOR {}",
            env!("CARGO_PKG_VERSION_MAJOR")
        ),
        format!(
            "#define PASTRY_VERSION_MINOR {}",
            env!("CARGO_PKG_VERSION_MINOR")
        ),
        format!(
            "#define PASTRY_VERSION_PATCH {}",
            env!("CARGO_PKG_VERSION_PATCH")
        ),
        format!(
            "#define PASTRY_VERSION_STRING \"{}\"",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(&define), "cbindgen.toml must say {define}");
    }
    assert!(
        !text.contains("#define MAGIC"),
        "crate constants leak into the header"
    );
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/pastry.h is out of date: run PASTRY_UPDATE_HEADER=1 cargo test --test c_header"
    );
}
