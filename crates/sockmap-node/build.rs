fn main() {
    napi_build::setup();
    // The Electron-like test build (feature `electron-cage`): the linker sends every call to the external-buffer
    // functions to the binding's stand-ins (`binding_cage.rs`), which fail.
    if std::env::var_os("CARGO_FEATURE_ELECTRON_CAGE").is_some() {
        for f in [
            "napi_create_external_buffer",
            "napi_create_external_arraybuffer",
        ] {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap={f}");
        }
    }
}
