//! The environment a build sees: buildspec variables, --env, built-ins, secrets and masking, the
//! region and the proxy and CA variables CodeBuild's environment has.

use crate::support::{Build, Run, build_commands};

#[test]
fn variables_keep_the_spelling_yaml_would_change() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    RELEASE: 1.10\n    FLAG: yes\n    OCTAL: 010\n    EMPTY:\nphases:\n  build:\n    commands:\n      - echo \"$RELEASE $FLAG $OCTAL [$EMPTY]\"\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["1.10 yes 010 []"]);
}

#[test]
fn env_flag_overrides_the_buildspec() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    STAGE: dev\n    KEEP: kept\nphases:\n  build:\n    commands:\n      - echo $STAGE $KEEP $EXTRA\n",
        )
        .args(["--env", "STAGE=prod", "-e", "EXTRA=x=y"])
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["prod kept x=y"]);
}

#[test]
fn builtin_variables_are_set() {
    let b = Build::new().buildspec(&build_commands(&[
        "test \"$CODEBUILD_SRC_DIR\" = \"$PWD\" && echo src-is-cwd",
        "echo id=$CODEBUILD_BUILD_ID",
        "echo number=$CODEBUILD_BUILD_NUMBER",
        "case $CODEBUILD_START_TIME in *[!0-9]*|'') echo bad-time;; *) echo time-ok;; esac",
        "echo initiator=$CODEBUILD_INITIATOR",
        "test -n \"$HOME\" && echo home-set",
    ]));
    let first = b.run();
    first.success();
    let lines = first.output_lines();
    assert_eq!(lines[0], "src-is-cwd");
    let project = first.json["project"].as_str().unwrap();
    assert!(
        lines[1].starts_with(&format!("id={project}:")),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[1],
        format!("id={}", first.json["build_id"].as_str().unwrap())
    );
    assert_eq!(lines[2], "number=1");
    assert_eq!(lines[3], "time-ok");
    assert!(lines[4].starts_with("initiator=kiln/"), "{}", lines[4]);
    assert_eq!(lines[5], "home-set");
    // The build number counts this project's builds on this machine.
    let second = b.run_with(&["--no-cache"]);
    assert_eq!(second.output_lines()[2], "number=2");
    assert_eq!(second.json["build_number"], 2);
}

#[test]
fn builtins_cannot_be_overridden() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  variables:\n    CODEBUILD_BUILD_NUMBER: 999\nphases:\n  build:\n    commands:\n      - echo $CODEBUILD_BUILD_NUMBER\n",
        )
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["1"]);
}

#[test]
fn secrets_resolve_from_the_secrets_file_and_are_masked() {
    let b = Build::new()
        .write(
            "secrets.env",
            "/app/db/host=db.internal.example\nprod/db:password=\"p4ss w0rd!\"\n",
        )
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    DB_HOST: /app/db/host\n  secrets-manager:\n    DB_PASSWORD: prod/db:password\nphases:\n  build:\n    commands:\n      - test \"$DB_PASSWORD\" = 'p4ss w0rd!' && echo password-matches\n      - echo \"host=$DB_HOST pw=$DB_PASSWORD\"\n",
        );
    let secrets = b.path().join("secrets.env");
    let run = b.args(["--secrets", secrets.to_str().unwrap()]).run();
    run.success()
        .log_has("password-matches")
        .log_has("host=*** pw=***")
        .log_lacks("p4ss w0rd!")
        .log_lacks("db.internal.example");
    let log = std::fs::read_to_string(run.json["log_file"].as_str().unwrap()).unwrap();
    assert!(!log.contains("p4ss w0rd!"), "{log}");
}

#[test]
fn secrets_resolve_from_kiln_environment_too() {
    Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /ci/token\nphases:\n  build:\n    commands:\n      - echo token=$TOKEN\n",
        )
        .env("KILN_SECRET_CI_TOKEN", "from-the-environment")
        .run()
        .success()
        .log_has("token=***")
        .log_lacks("from-the-environment");
}

#[test]
fn a_buildspec_cannot_name_a_variable_of_kilns_environment_as_its_secret() {
    // A hostile buildspec asks for kiln's own credentials by their names: only KILN_SECRET_*
    // variables stand in for missing secrets, so these are missing, and nothing runs.
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    STOLEN: AWS_SECRET_ACCESS_KEY\n  secrets-manager:\n    ALSO: KILN_TEST_CI_TOKEN\nphases:\n  build:\n    commands:\n      - echo \"stolen=$STOLEN also=$ALSO\"\n",
        )
        .env("AWS_SECRET_ACCESS_KEY", "kilnsecretvalue0123")
        .env("KILN_TEST_CI_TOKEN", "citokenvalue4567")
        .run();
    run.code(2);
    assert!(
        run.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        run.stderr
    );
    for value in ["kilnsecretvalue0123", "citokenvalue4567"] {
        assert!(!run.stderr.contains(value) && !run.stdout.contains(value));
    }
    assert!(!run.stderr.contains("stolen="), "a command ran");
}

#[test]
fn a_missing_secret_is_an_error_naming_variable_and_reference() {
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  secrets-manager:\n    API_KEY: prod/api:key\nphases:\n  build:\n    commands:\n      - echo never\n",
        )
        .run();
    run.code(2);
    assert!(run.stderr.contains("API_KEY"), "{}", run.stderr);
    assert!(run.stderr.contains("prod/api:key"), "{}", run.stderr);
    assert!(!run.stderr.contains("never"));
}

#[test]
fn every_missing_secret_is_named_in_one_error() {
    let secrets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secrets.path(), "/app/present=here\n").unwrap();
    let run = Build::new()
        .buildspec(
            "version: 0.2\nenv:\n  parameter-store:\n    DB_HOST: /app/db/host\n    PRESENT: /app/present\n    DB_PORT: /app/db/port\n  secrets-manager:\n    API_KEY: prod/api:key\nphases:\n  build:\n    commands:\n      - echo never\n",
        )
        .args(["--secrets", secrets.path().to_str().unwrap()])
        .run();
    run.code(2);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .skip_while(|l| !l.contains("3 secrets have no value"))
        .collect();
    assert_eq!(
        lines[1..],
        [
            "  parameter `/app/db/host` for variable DB_HOST",
            "  parameter `/app/db/port` for variable DB_PORT",
            "  secret `prod/api:key` for variable API_KEY",
        ],
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("PRESENT"), "{}", run.stderr);
    assert!(!run.stderr.contains("never"));
}

#[test]
fn aws_secret_keys_are_masked() {
    Build::new()
        .buildspec(&build_commands(&["echo key=$AWS_SECRET_ACCESS_KEY"]))
        .args([
            "--env",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY",
        ])
        .run()
        .success()
        .log_has("key=***")
        .log_lacks("wJalrXUtnFEMIK7MDENG");
}

#[test]
fn the_host_environment_does_not_leak_in_unless_passed() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "echo \"[$KILN_TEST_SECRETISH] [$KILN_TEST_PASSED]\"",
        ]))
        .env("KILN_TEST_SECRETISH", "leaked")
        .env("KILN_TEST_PASSED", "passed")
        .args(["--pass-env", "KILN_TEST_PASSED"])
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["[] [passed]"]);
}

#[test]
fn pass_env_takes_globs_and_names_what_matches_nothing() {
    let run = Build::new()
        .buildspec(&build_commands(&[
            "echo \"[$KILN_GLOB_ONE] [$KILN_GLOB_TWO] [$KILN_OTHER]\"",
        ]))
        .env("KILN_GLOB_ONE", "one")
        .env("KILN_GLOB_TWO", "two")
        .env("KILN_OTHER", "other")
        .args(["--pass-env", "KILN_GLOB_*", "--pass-env", "KILN_NOTHING_*"])
        .run();
    run.success()
        .log_has("warning: --pass-env KILN_NOTHING_* matches no variable of kiln's environment")
        .log_lacks("--pass-env KILN_GLOB_* matches no");
    assert_eq!(run.output_lines(), ["[one] [two] []"]);
}

/// kiln's variables that choose the region, removed from its environment unless the test sets them,
/// so that the machine's own do not decide the result.
const REGION_SOURCES: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
];

const PRINT_REGION: &str = "echo \"region=[$AWS_REGION] default=[$AWS_DEFAULT_REGION]\"";

/// Runs `b` with only the region sources it sets, and with `AWS_CONFIG_FILE` naming a file that
/// does not exist unless it sets one (not the machine's `~/.aws/config`).
fn run_for_region(b: &Build, extra: &[&str]) -> Run {
    let mut cmd = b.command(extra);
    let set: Vec<String> = cmd
        .get_envs()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    for name in REGION_SOURCES {
        if !set.iter().any(|s| s == name) {
            cmd.env_remove(name);
        }
    }
    if !set.iter().any(|s| s == "AWS_CONFIG_FILE") {
        cmd.env("AWS_CONFIG_FILE", b.path().join("no-aws-config"));
    }
    b.finish(cmd.output().expect("kiln runs"))
}

#[test]
fn the_region_is_kiln_own_aws_region_else_aws_default_region() {
    let b = Build::new()
        .buildspec(&build_commands(&[PRINT_REGION]))
        .env("AWS_REGION", "eu-west-3")
        .env("AWS_DEFAULT_REGION", "eu-west-2");
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[eu-west-3] default=[eu-west-3]"]
    );

    let b = Build::new()
        .buildspec(&build_commands(&[PRINT_REGION]))
        .env("AWS_DEFAULT_REGION", "eu-west-2");
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[eu-west-2] default=[eu-west-2]"]
    );
}

#[test]
fn the_region_comes_from_the_aws_config_file_for_the_profile() {
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("config");
    std::fs::write(
        &file,
        "[default]\nregion = ap-south-1\n\n[profile ci]\noutput = json\nregion = ca-central-1\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let b = Build::new()
        .buildspec(&build_commands(&[PRINT_REGION]))
        .env("AWS_CONFIG_FILE", file);
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[ap-south-1] default=[ap-south-1]"]
    );

    let b = Build::new()
        .buildspec(&build_commands(&[PRINT_REGION]))
        .env("AWS_CONFIG_FILE", file)
        .env("AWS_PROFILE", "ci");
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[ca-central-1] default=[ca-central-1]"]
    );
}

#[test]
fn without_a_region_anywhere_the_build_runs_in_us_east_1() {
    let b = Build::new().buildspec(&build_commands(&[PRINT_REGION]));
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[us-east-1] default=[us-east-1]"]
    );
}

#[test]
fn the_buildspec_and_env_flag_override_the_region() {
    let b = Build::new()
        .buildspec(&format!(
            "version: 0.2\nenv:\n  variables:\n    AWS_REGION: ap-northeast-1\nphases:\n  build:\n    commands:\n      - '{PRINT_REGION}'\n"
        ))
        .env("AWS_REGION", "eu-west-3");
    let run = run_for_region(&b, &[]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[ap-northeast-1] default=[eu-west-3]"]
    );
    let run = run_for_region(&b, &["--env", "AWS_DEFAULT_REGION=me-south-1"]);
    run.success();
    assert_eq!(
        run.output_lines(),
        ["region=[ap-northeast-1] default=[me-south-1]"]
    );
}

/// kiln's proxy and CA variables, as a company network would set them.
const PROXIES: &[(&str, &str)] = &[
    ("HTTP_PROXY", "http://proxy.example:3128"),
    ("HTTPS_PROXY", "http://proxy.example:3129"),
    ("NO_PROXY", "localhost,.internal.example"),
    ("http_proxy", "http://lower.example:3128"),
    ("https_proxy", "http://lower.example:3129"),
    ("no_proxy", "localhost"),
    ("SSL_CERT_FILE", "/etc/kiln-test/ca.pem"),
    ("REQUESTS_CA_BUNDLE", "/etc/kiln-test/requests.pem"),
    ("NODE_EXTRA_CA_CERTS", "/etc/kiln-test/node.pem"),
    ("CURL_CA_BUNDLE", "/etc/kiln-test/curl.pem"),
];

fn with_proxies(mut b: Build) -> Build {
    for (name, value) in PROXIES {
        b = b.env(name, value);
    }
    b
}

fn print_proxies() -> String {
    let commands: Vec<String> = PROXIES
        .iter()
        .map(|(name, _)| format!("echo \"{name}=[${name}]\""))
        .collect();
    build_commands(&commands.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn proxy_and_ca_variables_pass_through_to_a_build_with_a_network() {
    let run = with_proxies(Build::new().buildspec(&print_proxies())).run();
    run.success();
    let expected: Vec<String> = PROXIES
        .iter()
        .map(|(name, value)| format!("{name}=[{value}]"))
        .collect();
    assert_eq!(run.output_lines(), expected);
}

#[test]
fn proxy_and_ca_variables_stay_out_of_a_build_without_a_network() {
    let run = with_proxies(Build::new().buildspec(&print_proxies()))
        .args(["--network", "none"])
        .run();
    run.success();
    let expected: Vec<String> = PROXIES
        .iter()
        .map(|(name, _)| format!("{name}=[]"))
        .collect();
    assert_eq!(run.output_lines(), expected);
}

#[test]
fn a_ca_file_outside_the_homes_is_readable_in_the_build() {
    let dir = crate::support::host_visible_dir("kiln-ca-");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE----- outside\n").unwrap();
    let run = Build::new()
        .buildspec(&build_commands(&["cat \"$SSL_CERT_FILE\""]))
        .env("SSL_CERT_FILE", ca.to_str().unwrap())
        .run();
    run.success();
    assert_eq!(run.output_lines(), ["-----BEGIN CERTIFICATE----- outside"]);
}

#[test]
fn a_ca_file_in_a_home_is_readable_in_the_build_and_nothing_beside_it() {
    // The homes are hidden from a build: a CA file there is shown alone, read-only. (Below /home:
    // kiln run as root reaches the host's /root, mode 0700, from no id its launcher has, so a file
    // there is not shown, as toolchains there are not.)
    let home = std::env::var("HOME").unwrap_or_default();
    let parent = if home.starts_with("/home/") {
        home
    } else {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test needs a HOME below /home, or root to write in /home"
        );
        "/home".to_string()
    };
    let dir = tempfile::Builder::new()
        .prefix(".kiln-test-ca-")
        .tempdir_in(&parent)
        .unwrap();
    let ca = dir.path().join("corp.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE----- corp\n").unwrap();
    std::fs::write(dir.path().join("beside.txt"), "private").unwrap();
    let run = Build::new()
        .buildspec(&build_commands(&[
            "cat \"$NODE_EXTRA_CA_CERTS\"",
            "ls \"$(dirname \"$NODE_EXTRA_CA_CERTS\")\"",
            "(echo x >> \"$NODE_EXTRA_CA_CERTS\") 2>/dev/null && echo writable || echo read-only",
        ]))
        .env("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap())
        .run();
    run.success();
    assert_eq!(run.json["sandbox"], "namespaces", "{}", run.stderr);
    assert_eq!(
        run.output_lines(),
        ["-----BEGIN CERTIFICATE----- corp", "corp.pem", "read-only"]
    );
}

#[test]
fn a_proxy_password_is_masked() {
    Build::new()
        .buildspec(&build_commands(&["echo \"proxy=$HTTPS_PROXY\""]))
        .env("HTTPS_PROXY", "http://builder:proxypw9876@127.0.0.1:3128")
        .run()
        .success()
        .log_has("proxy=http://builder:***@127.0.0.1:3128")
        .log_lacks("proxypw9876");
}
