//! Registry credentials, found where Docker keeps them: `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json` (`auths` entries, `credHelpers` and `credsStore` helpers), unless the
//! command line gives them (`--username` with `--password-stdin`).

use std::path::PathBuf;

use base64::Engine as _;

/// Credentials for one registry, and where they came from.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub basic: Option<(String, String)>,
    /// Where kiln looked, for an error message.
    pub looked: String,
}

/// The Docker config file kiln reads.
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => dirs::home_dir().map(|h| h.join(".docker/config.json")),
    }
}

/// The credentials for `registry` (`host[:port]`).
pub fn for_registry(registry: &str, access: &super::Access) -> Found {
    if let Some(user) = &access.username {
        return Found {
            basic: Some((user.clone(), access.password.clone().unwrap_or_default())),
            looked: "--username and --password-stdin".into(),
        };
    }
    let Some(path) = docker_config_path() else {
        return Found {
            basic: None,
            looked: "no Docker config file (no home directory); use --username/--password-stdin"
                .into(),
        };
    };
    let looked = format!(
        "{} (DOCKER_CONFIG or ~/.docker), --username/--password-stdin",
        path.display()
    );
    let Ok(text) = std::fs::read(&path) else {
        return Found {
            basic: None,
            looked,
        };
    };
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(&text) else {
        tracing::warn!("{} is not JSON; ignored", path.display());
        return Found {
            basic: None,
            looked,
        };
    };
    let keys = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    let auths = &config["auths"];
    for key in &keys {
        let entry = &auths[key.as_str()];
        if let Some(encoded) = entry["auth"].as_str().filter(|s| !s.is_empty())
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded)
            && let Ok(text) = String::from_utf8(decoded)
            && let Some((user, pass)) = text.split_once(':')
        {
            return Found {
                basic: Some((user.to_string(), pass.to_string())),
                looked,
            };
        }
        if let (Some(user), Some(pass)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Found {
                basic: Some((user.to_string(), pass.to_string())),
                looked,
            };
        }
    }
    let helper = keys
        .iter()
        .find_map(|k| config["credHelpers"][k.as_str()].as_str())
        .or_else(|| config["credsStore"].as_str());
    if let Some(helper) = helper {
        return Found {
            basic: run_helper(helper, registry),
            looked: format!("{looked}, docker-credential-{helper}"),
        };
    }
    Found {
        basic: None,
        looked,
    }
}

/// Asks a Docker credential helper (`docker-credential-NAME get`) for a registry's credentials.
fn run_helper(helper: &str, registry: &str) -> Option<(String, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(registry.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    Some((
        answer["Username"].as_str()?.to_string(),
        answer["Secret"].as_str()?.to_string(),
    ))
}
