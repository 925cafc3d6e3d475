//! Compiles `proto/*.proto` with the protoc shipped by `protoc-bin-vendored`,
//! so nothing has to be installed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.compile_protos(
        &[
            "proto/sim.proto",
            "proto/cluster.proto",
            "proto/node_api.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
