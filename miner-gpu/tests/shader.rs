//! The kernel checked for every backend without their GPUs: `shaders/sha256d.wgsl` is
//! parsed and validated by naga (wgpu's own compiler, the version wgpu 30 uses), then
//! translated to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL) for every
//! dispatch configuration the miner can pick. Each output is checked again: SPIR-V is read
//! back by naga and validated, SPIR-V and GLSL by Khronos' `spirv-val` and
//! `glslangValidator` (installed by scripts/setup.sh; required when CI=true).

use miner_gpu::gpu::{sweep_configs, DispatchConfig, CALIBRATION, SHADER};
use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};
use std::io::Write;
use std::process::Command;

fn validate(module: &Module, what: &str) -> ModuleInfo {
    Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(module)
        .unwrap_or_else(|e| panic!("{what} does not validate: {e:?}"))
}

fn parsed() -> (Module, ModuleInfo) {
    let module = naga::front::wgsl::parse_str(SHADER)
        .unwrap_or_else(|e| panic!("sha256d.wgsl: {}", e.emit_to_string(SHADER)));
    let info = validate(&module, "sha256d.wgsl");
    (module, info)
}

/// The module with this configuration's override values applied (what a backend
/// compiles for one pipeline).
fn specialised(module: &Module, info: &ModuleInfo, c: DispatchConfig) -> (Module, ModuleInfo) {
    let mut constants = PipelineConstants::default();
    constants.insert(
        "NONCES_PER_INVOCATION".into(),
        c.nonces_per_invocation as f64,
    );
    constants.insert("WORKGROUP_SIZE".into(), c.workgroup_size as f64);
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, "main")),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{c}: overrides: {e:?}"));
    let m = m.into_owned();
    let i = i.into_owned();
    let ep = &m.entry_points[0];
    assert_eq!(ep.workgroup_size, [c.workgroup_size, 1, 1], "{c}");
    (m, i)
}

fn configs() -> Vec<DispatchConfig> {
    let mut all = sweep_configs();
    all.extend(CALIBRATION);
    all.push(DispatchConfig::DEFAULT);
    all.push(DispatchConfig::new(1, 1));
    all.dedup();
    all
}

/// An external validator, or None when it is not installed (a failure when CI=true).
fn tool(name: &str) -> Option<String> {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {name} is missing (scripts/setup.sh installs it)");
    }
    found.then(|| name.to_string())
}

fn run_tool(cmd: &mut Command, what: &str) {
    let out = cmd.output().expect("run validator");
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kernel_validates_as_wgsl_with_its_overrides() {
    let (module, _) = parsed();
    let names: Vec<_> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect();
    assert_eq!(names, ["NONCES_PER_INVOCATION", "WORKGROUP_SIZE"]);
    assert_eq!(module.entry_points.len(), 1);
    assert_eq!(module.entry_points[0].name, "main");
}

#[test]
fn kernel_translates_to_spirv_and_it_validates() {
    let (module, info) = parsed();
    let spirv_val = tool("spirv-val");
    let dir = tempfile::tempdir().unwrap();
    for c in configs() {
        let (m, i) = specialised(&module, &info, c);
        let words = naga::back::spv::write_vec(
            &m,
            &i,
            &naga::back::spv::Options::default(),
            Some(&naga::back::spv::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: "main".into(),
            }),
        )
        .unwrap_or_else(|e| panic!("{c}: SPIR-V: {e:?}"));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let back = naga::front::spv::parse_u8_slice(&bytes, &Default::default())
            .unwrap_or_else(|e| panic!("{c}: SPIR-V does not read back: {e:?}"));
        validate(&back, &format!("{c}: SPIR-V read back"));
        if let Some(t) = &spirv_val {
            let path = dir.path().join(format!("k{c}.spv"));
            std::fs::write(&path, &bytes).unwrap();
            run_tool(
                Command::new(t)
                    .arg("--target-env")
                    .arg("vulkan1.1")
                    .arg(&path),
                &format!("{c}: spirv-val"),
            );
        }
    }
}

#[test]
fn kernel_translates_to_msl() {
    let (module, info) = parsed();
    for c in configs() {
        let (m, i) = specialised(&module, &info, c);
        let options = naga::back::msl::Options {
            lang_version: (2, 0),
            ..Default::default()
        };
        let pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, "main".into())),
            ..Default::default()
        };
        let (msl, _) = naga::back::msl::write_string(&m, &i, &options, &pipeline)
            .unwrap_or_else(|e| panic!("{c}: MSL: {e:?}"));
        assert!(msl.contains("kernel void"), "{c}");
        assert!(msl.contains("atomic_fetch_add_explicit"), "{c}");
    }
}

#[test]
fn kernel_translates_to_hlsl() {
    let (module, info) = parsed();
    for c in configs() {
        let (m, i) = specialised(&module, &info, c);
        let options = naga::back::hlsl::Options {
            shader_model: naga::back::hlsl::ShaderModel::V5_1,
            ..Default::default()
        };
        let pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, "main".into())),
        };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &options, &pipeline)
            .write(&m, &i, None)
            .unwrap_or_else(|e| panic!("{c}: HLSL: {e:?}"));
        let numthreads = format!("[numthreads({}, 1, 1)]", c.workgroup_size);
        assert!(hlsl.contains(&numthreads), "{c}: {numthreads} missing");
        assert!(hlsl.contains("InterlockedAdd"), "{c}");
    }
}

#[test]
fn kernel_translates_to_glsl_and_it_validates() {
    let (module, info) = parsed();
    let glslang = tool("glslangValidator");
    let dir = tempfile::tempdir().unwrap();
    for c in configs() {
        let (m, i) = specialised(&module, &info, c);
        let options = naga::back::glsl::Options {
            version: naga::back::glsl::Version::Desktop(430),
            ..Default::default()
        };
        let pipeline = naga::back::glsl::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: "main".into(),
            multiview: None,
        };
        let mut glsl = String::new();
        naga::back::glsl::Writer::new(
            &mut glsl,
            &m,
            &i,
            &options,
            &pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .unwrap_or_else(|e| panic!("{c}: GLSL: {e:?}"));
        // (naga's own GLSL front end cannot read this back: it lacks buffer atomics.)
        assert!(glsl.contains("atomicAdd"), "{c}");
        let local_size = format!("local_size_x = {}", c.workgroup_size);
        assert!(glsl.contains(&local_size), "{c}: {local_size} missing");
        if let Some(t) = &glslang {
            let path = dir.path().join(format!("k{c}.comp"));
            std::fs::File::create(&path)
                .unwrap()
                .write_all(glsl.as_bytes())
                .unwrap();
            run_tool(
                Command::new(t).arg(&path),
                &format!("{c}: glslangValidator"),
            );
        }
    }
}
