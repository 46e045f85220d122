//! `omni train mllm` as a process: a run killed with SIGKILL mid-way resumes from its last
//! checkpoint and ends with exactly the loss curve of an uninterrupted run, and the model
//! it saves answers through `omni ask --image --mllm`.

#[path = "../../omni/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn omni(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omni"));
    command.env("OMNI_HOME", home).env("OMNI_OFFLINE", "1");
    command
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small recipe named `name` over the scenes in `data`: 8 steps, a checkpoint every 2.
fn recipe(home: &Path, data: &Path, name: &str) -> PathBuf {
    let path = home.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nllm = \"smollm2-135m-instruct\"\nsystem = \"Answer with one word.\"\n\
         train = [\"{0}/train.jsonl\"]\neval = [\"{0}/test.jsonl\"]\neval_records = 4\n\
         kinds = [\"colour\", \"count\"]\n\n\
         [training]\nsteps = 8\nbatch_size = 2\ncheckpoint_every = 2\nwarmup = 2\n",
        data.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn losses(report: &serde_json::Value) -> Vec<f64> {
    report["evaluation"]["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_losses() {
    let (Some(llm), Some(effnet)) = (
        common::model_dir("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        common::model_dir("efficientnet-lite0", ""),
    ) else {
        return;
    };
    let home = common::temp_dir("train-mllm-home");
    std::fs::create_dir_all(home.join("models")).unwrap();
    std::os::unix::fs::symlink(&llm, home.join("models/smollm2-135m-instruct")).unwrap();
    std::os::unix::fs::symlink(&effnet, home.join("models/efficientnet-lite0")).unwrap();
    let data = home.join("scenes");
    let synth = omni(&home)
        .args([
            "data", "synth", "scenes", "--train", "24", "--test", "8", "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );

    let whole = ok(&omni(&home)
        .args(["train", "mllm", "--json", "--config"])
        .arg(recipe(&home, &data, "whole"))
        .output()
        .unwrap());
    let expected = losses(&whole);
    assert_eq!(expected.len(), 8);

    // The same run, killed (SIGKILL: no chance to save) once its first checkpoint is on
    // disk, then started again with the same command.
    let config = recipe(&home, &data, "killed");
    let mut child = omni(&home)
        .args(["train", "mllm", "--json", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = home.join("runs/killed/latest");
    let started = Instant::now();
    while !latest.is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !home.join("models/killed").exists(),
        "the killed run saved a model"
    );
    let resumed = ok(&omni(&home)
        .args(["train", "mllm", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap());
    assert_eq!(losses(&resumed), expected);

    // The saved model answers from the command line.
    let image = data
        .join("images")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let answer = ok(&omni(&home)
        .args(["ask", "--json", "--mllm", "killed", "--image"])
        .arg(&image)
        .arg("How many shapes are there?")
        .output()
        .unwrap());
    assert!(answer["answer"].is_string(), "{answer}");
    std::fs::remove_dir_all(&home).ok();
}
