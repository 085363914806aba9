//! The C library as a C programmer gets it: `make install` into a temporary prefix, then a
//! C program (`examples/c/abi.c`) and a C++ program (`examples/cpp/hello.cpp`) built with
//! nothing but what `pkg-config --cflags --libs` says, against the shared library
//! (`pastry`) and the static one (`pastry-static`), and run. Also checks the shared
//! library's SONAME, that programs record it, and that the installed libraries carry no
//! debug information. Needs `make`, `pkg-config`, `readelf` and `strip` besides the
//! compilers.

mod c_build;

use std::path::{Path, PathBuf};
use std::process::Command;

use c_build::*;

const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a command to its end and returns its stdout; fails with its output otherwise.
fn output(mut command: Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs the library (the debug build `c_build` made, so that nothing is built twice)
/// into a new prefix; returns the prefix.
fn install() -> PathBuf {
    let built = lib_dir();
    let target = built.parent().expect("the target directory");
    let prefix = scratch().join("prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(root())
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg("PROFILE=debug")
        .arg(format!("TARGET_DIR={}", target.display()))
        .arg(format!("CARGO={}", env!("CARGO")));
    output(make, "make install");
    prefix
}

/// What `pkg-config --cflags --libs PACKAGE` says for the installed library.
fn pkg_config(prefix: &Path, package: &str) -> Vec<String> {
    let mut command = Command::new("pkg-config");
    command
        .args(["--cflags", "--libs", package])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"));
    output(command, &format!("pkg-config --cflags --libs {package}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The dynamic section of an ELF file, as `readelf -d` prints it.
fn dynamic_section(file: &Path) -> String {
    let mut command = Command::new("readelf");
    command.arg("-d").arg(file);
    output(command, "readelf -d")
}

/// Whether an ELF file (or every member of an archive) holds a `.debug_info` section.
fn has_debug_info(file: &Path) -> bool {
    let mut command = Command::new("readelf");
    command.arg("-S").arg("-W").arg(file);
    output(command, "readelf -S").contains(".debug_info")
}

#[test]
fn installed_library_builds_programs_with_pkg_config_alone() {
    let prefix = install();
    let lib = prefix.join("lib");
    let real = lib.join(format!("libpastry.so.{VERSION}"));
    for file in [
        real.clone(),
        lib.join(format!("libpastry.so.{MAJOR}")),
        lib.join("libpastry.so"),
        lib.join("libpastry.a"),
        prefix.join("include/pastry.h"),
        lib.join("pkgconfig/pastry.pc"),
        lib.join("pkgconfig/pastry-static.pc"),
    ] {
        assert!(file.exists(), "make install made no {}", file.display());
    }
    let soname = format!("Library soname: [libpastry.so.{MAJOR}]");
    assert!(
        dynamic_section(&real).contains(&soname),
        "the shared library has no {soname}"
    );
    assert!(
        !has_debug_info(&real),
        "the shared library keeps debug info"
    );
    assert!(
        !has_debug_info(&lib.join("libpastry.a")),
        "the static library keeps debug info"
    );

    for (source, last) in [
        ("c/abi.c", "abi: all "),
        ("cpp/hello.cpp", "hello: all checks passed"),
    ] {
        for package in ["pastry", "pastry-static"] {
            let path = root().join("examples").join(source);
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let program = scratch().join(format!("{name}-installed-{package}"));
            let mut command = compiler(&path);
            command
                .arg(&path)
                .arg("-o")
                .arg(&program)
                .args(pkg_config(&prefix, package));
            run_compiler(command, &format!("{source} with pkg-config {package}"));

            let needed = dynamic_section(&program).contains("libpastry.so");
            if package == "pastry" {
                let want = format!("Shared library: [libpastry.so.{MAJOR}]");
                assert!(
                    dynamic_section(&program).contains(&want),
                    "{source} does not record {want}"
                );
            } else {
                assert!(
                    !needed,
                    "{source} linked statically still needs libpastry.so"
                );
            }
            // The loader finds the installed library as it would in a system directory.
            let mut run = Command::new(&program);
            run.env("LD_LIBRARY_PATH", &lib);
            start_command(run).finish().assert_success(last);
        }
    }
}
