//! Gives the shared library its SONAME on Linux: `libpastry.so.MAJOR`, so that programs
//! linked against an installed library record the ABI they were built for (see the
//! README's "ABI and versions"), and `make install` ships it under that name.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpastry.so.{major}");
    }
}
