//! Compiles `proto/` with tonic-prost-build and writes the descriptor set that
//! server reflection serves. Needs `protoc` (Debian `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/rayltics/node/v1/node.proto",
        "proto/rayltics/events/v1/events.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("rayltics_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
