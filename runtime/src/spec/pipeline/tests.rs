use super::*;
use crate::spec::diagnostic::Severity;

const BASE: &str = r#"pipeline:
  name: demo
  roleArn: arn:aws:iam::111111111111:role/pipeline
  artifactStore: {type: S3, location: artifacts-bucket}
  stages:
    - name: Source
      actions:
        - name: Checkout
          actionTypeId: {category: Source, owner: AWS, provider: CodeCommit, version: "1"}
          configuration: {RepositoryName: app, BranchName: main}
          outputArtifacts: [{name: Src}]
          namespace: SourceVars
    - name: Build
      actions:
        - name: Compile
          actionTypeId: {category: Build, owner: AWS, provider: CodeBuild, version: "1"}
          runOrder: 1
          configuration: {ProjectName: app-build}
          inputArtifacts: [{name: Src}]
          outputArtifacts: [{name: Bin}]
          namespace: BuildVars
    - name: Deploy
      actions:
        - name: Approve
          actionTypeId: {category: Approval, owner: AWS, provider: Manual, version: "1"}
          runOrder: 1
        - name: Ship
          actionTypeId: {category: Deploy, owner: AWS, provider: CodeDeploy, version: "1"}
          runOrder: 2
          configuration: {ApplicationName: app, DeploymentGroupName: prod}
          inputArtifacts: [{name: Bin}]
metadata: {pipelineArn: "arn:aws:codepipeline:us-east-1:111111111111:demo"}
"#;

fn parse_as(name: &str, text: &str, parameters: &[(&str, &str)]) -> Result<Loaded, SpecError> {
    let options = LoadOptions {
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        claimed: Vec::new(),
    };
    parse(Path::new(name), text, &options)
}

fn ok(text: &str) -> Loaded {
    match parse_as("pipeline.yml", text, &[]) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

/// Every diagnostic as `line:column message | help`.
fn findings(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{} {}{} | {}",
                d.span.line,
                d.span.column,
                if d.severity == Severity::Warning {
                    "warning: "
                } else {
                    ""
                },
                d.message,
                d.help.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn errors(text: &str) -> String {
    errors_with(text, &[])
}

fn errors_with(text: &str, parameters: &[(&str, &str)]) -> String {
    match parse_as("pipeline.yml", text, parameters) {
        Ok(l) => panic!("expected errors, got {:?}", l.pipelines),
        Err(e) => findings(&e.errors().cloned().collect::<Vec<_>>()),
    }
}

fn base(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn a_get_pipeline_file_reads_every_part() {
    let loaded = ok(BASE);
    assert!(loaded.warnings.is_empty(), "{}", findings(&loaded.warnings));
    let p = select(&loaded, None).unwrap();
    assert_eq!(p.name, "demo");
    assert_eq!(p.execution_mode, ExecutionMode::Superseded);
    assert_eq!(
        p.artifact_store.as_ref().unwrap().location,
        "artifacts-bucket"
    );
    let names: Vec<_> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Source", "Build", "Deploy"]);
    let ship = &p.stages[2].actions[1];
    assert_eq!(ship.run_order, 2);
    assert_eq!(ship.action_type_id.provider, "CodeDeploy");
    assert_eq!(ship.configuration["DeploymentGroupName"], "prod");
    assert_eq!(ship.input_artifacts[0].name, "Bin");
    assert_eq!(
        p.stages[0].actions[0].namespace.as_deref(),
        Some("SourceVars")
    );
    assert_eq!(p.stages[0].actions[0].run_order, 1);
}

#[test]
fn json_reads_as_yaml_does_and_a_bare_pipeline_object_too() {
    let json = r#"{"name": "p", "stages": [
  {"name": "S", "actions": [{"name": "A", "actionTypeId": {"category": "Source", "owner": "ThirdParty", "provider": "GitHub", "version": "1"},
    "configuration": {"Owner": "o", "Repo": "r", "Branch": "main", "OAuthToken": "****"}, "outputArtifacts": [{"name": "S"}]}]},
  {"name": "B", "actions": [{"name": "B", "actionTypeId": {"category": "Test", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
    "configuration": {"ProjectName": "t"}, "inputArtifacts": [{"name": "S"}]}]}
], "version": 3}"#;
    let loaded = parse_as("p.json", json, &[]).unwrap();
    assert_eq!(
        loaded.pipelines[0].stages[1].actions[0]
            .action_type_id
            .category,
        "Test"
    );
    assert_eq!(
        loaded.pipelines[0].stages[0].actions[0].configuration["Repo"],
        "r"
    );
}

#[test]
fn unknown_keys_are_warnings_naming_them() {
    let loaded = ok(&base("  name: demo\n", "  name: demo\n  stagez: 1\n"));
    let w = findings(&loaded.warnings);
    assert!(
        w.contains("3:3 warning: unknown key `stagez` in the pipeline"),
        "{w}"
    );
    assert!(w.contains("did you mean `stages`?"), "{w}");
}

#[test]
fn stage_settings_kiln_ignores_are_warned_about() {
    let loaded = ok(&base(
        "    - name: Build\n",
        "    - name: Build\n      onFailure: {result: ROLLBACK}\n",
    ));
    let w = findings(&loaded.warnings);
    assert!(
        w.contains("14:7 warning: `onFailure`: kiln does not roll back"),
        "{w}"
    );
}

#[test]
fn a_syntax_error_has_its_place() {
    let e = parse_as(
        "pipeline.json",
        "{\"pipeline\": {\"name\": \"x\",\n \"stages\": [}\n",
        &[],
    )
    .unwrap_err();
    let d = e.errors().next().unwrap();
    assert_eq!((d.span.line, d.span.column), (2, 13), "{}", d.message);
    assert!(
        d.message.contains("not valid JSON: expected value"),
        "{}",
        d.message
    );
    let e = parse_as("p.yml", "pipeline:\n  name: [x\n", &[]).unwrap_err();
    let d = e.errors().next().unwrap();
    assert!(d.message.contains("not valid YAML"), "{}", d.message);
}

#[test]
fn a_file_that_is_no_pipeline_says_what_kiln_reads() {
    let e = errors("version: 0.2\nphases: {}\n");
    assert!(e.contains("1:1 this file holds no pipeline"), "{e}");
    assert!(e.contains("get-pipeline"), "{e}");
}

#[test]
fn names_that_would_escape_a_folder_are_refused() {
    let e = errors(
        &base("  name: demo", "  name: ../demo")
            .replacen("name: Build\n", "name: ..\n", 1)
            .replacen("name: Compile", "name: a/b", 1),
    );
    assert!(
        e.contains("2:9 the pipeline name `../demo` holds `/`"),
        "{e}"
    );
    assert!(e.contains("13:13 the stage name `..` is not a name"), "{e}");
    assert!(e.contains("15:17 the action name `a/b` holds `/`"), "{e}");
}

#[test]
fn a_pipeline_needs_two_stages_each_with_an_action() {
    let one = "pipeline:\n  name: p\n  stages:\n    - name: Source\n      actions: []\n";
    let e = errors(one);
    assert!(
        e.contains("4:13 the pipeline has 1 stage; CodePipeline needs at least two"),
        "{e}"
    );
    assert!(e.contains("4:13 the stage `Source` has no actions"), "{e}");
}

#[test]
fn sources_belong_in_the_first_stage_only() {
    let e = errors(
        &base("provider: CodeBuild", "provider: CodeCommit").replacen(
            "category: Build",
            "category: Source",
            1,
        ),
    );
    assert!(
        e.contains(
            "16:66 `Compile` is a Source action, and Source actions belong in the first stage only"
        ),
        "{e}"
    );
    let e = errors(&base(
        "category: Source, owner: AWS, provider: CodeCommit",
        "category: Build, owner: AWS, provider: CodeBuild",
    ));
    assert!(
        e.contains("the first stage holds only Source actions; `Checkout` is a Build action"),
        "{e}"
    );
}

#[test]
fn stage_and_action_names_are_unique() {
    let e =
        errors(&base("- name: Deploy", "- name: Build").replacen("name: Ship", "name: Approve", 1));
    assert!(
        e.contains("22:13 there are two stages named `Build`"),
        "{e}"
    );
    assert!(
        e.contains("27:17 the stage `Build` has two actions named `Approve`"),
        "{e}"
    );
}

#[test]
fn run_order_is_a_number_from_1_to_999() {
    let e = errors(&base("runOrder: 2", "runOrder: 1000").replacen(
        "runOrder: 1\n",
        "runOrder: x\n",
        1,
    ));
    assert!(
        e.contains("17:21 runOrder `x` is not a whole number from 1 to 999"),
        "{e}"
    );
    assert!(e.contains("29:21 runOrder `1000`"), "{e}");
}

#[test]
fn output_artifact_names_are_unique_and_well_formed() {
    let e = errors(&base(
        "outputArtifacts: [{name: Bin}]",
        "outputArtifacts: [{name: Src}]",
    ));
    assert!(
        e.contains("20:36 the output artifact `Src` is already produced by Source/Checkout"),
        "{e}"
    );
    let e = errors(
        &base(
            "outputArtifacts: [{name: Bin}]",
            "outputArtifacts: [{name: \"b/n\"}]",
        )
        .replacen("[{name: Bin}]", "[{name: \"b/n\"}]", 1),
    );
    assert!(e.contains("`b/n` is not a valid artifact name"), "{e}");
}

#[test]
fn an_input_nobody_produces_is_an_error_naming_the_nearest() {
    let e = errors(&base(
        "inputArtifacts: [{name: Bin}]",
        "inputArtifacts: [{name: Bim}]",
    ));
    assert!(
        e.contains("31:35 no action produces the input artifact `Bim` of Deploy/Ship"),
        "{e}"
    );
    assert!(e.contains("did you mean `Bin`?"), "{e}");
}

#[test]
fn an_input_produced_too_late_says_which_action_and_why() {
    // Produced by a later stage.
    let e = errors(
        &base(
            "inputArtifacts: [{name: Src}]",
            "inputArtifacts: [{name: Src}, {name: Late}]",
        )
        .replacen(
            "DeploymentGroupName: prod}\n",
            "DeploymentGroupName: prod}\n          outputArtifacts: [{name: Late}]\n",
            1,
        ),
    );
    assert!(
        e.contains("19:48 the input artifact `Late` of Build/Compile is produced by Deploy/Ship, which does not run before it"),
        "{e}"
    );
    // Produced in the same stage at the same runOrder: they run side by side.
    let e = errors(&base("runOrder: 2", "runOrder: 1").replacen(
        "runOrder: 1\n        - name: Ship",
        "runOrder: 1\n          outputArtifacts: [{name: Ok}]\n        - name: Ship",
        1,
    ));
    assert!(!e.contains("Ok"), "{e}");
    let text = base("inputArtifacts: [{name: Bin}]", "inputArtifacts: [{name: Bin}]\n          outputArtifacts: [{name: Pkg}]")
        .replacen("provider: Manual, version: \"1\"}\n          runOrder: 1\n", "provider: CodeBuild, version: \"1\"}\n          runOrder: 1\n          configuration: {ProjectName: x}\n          inputArtifacts: [{name: Pkg}]\n", 1)
        .replacen("category: Approval", "category: Test", 1);
    let e = errors(&text);
    assert!(
        e.contains("give Deploy/Approve a runOrder higher than Deploy/Ship's (2)"),
        "{e}"
    );
}

#[test]
fn an_input_from_a_lower_run_order_of_the_same_stage_is_fine() {
    let text = base(
        "provider: Manual, version: \"1\"}\n          runOrder: 1\n",
        "provider: CodeBuild, version: \"1\"}\n          runOrder: 1\n          configuration: {ProjectName: x}\n          inputArtifacts: [{name: Bin}]\n          outputArtifacts: [{name: Pkg}]\n",
    )
    .replacen("category: Approval", "category: Test", 1)
    .replacen("inputArtifacts: [{name: Bin}]\nmetadata", "inputArtifacts: [{name: Pkg}]\nmetadata", 1);
    let loaded = ok(&text);
    assert_eq!(
        loaded.pipelines[0].stages[2].actions[1].input_artifacts[0].name,
        "Pkg"
    );
}

#[test]
fn artifact_counts_are_what_each_provider_takes() {
    let e = errors(
        &base("          inputArtifacts: [{name: Src}]\n", "")
            .replacen(
                "runOrder: 1\n        - name: Ship",
                "runOrder: 1\n          inputArtifacts: [{name: Src}]\n        - name: Ship",
                1,
            )
            .replacen(
                "inputArtifacts: [{name: Bin}]",
                "inputArtifacts: [{name: Bin}]\n          outputArtifacts: [{name: Out}]",
                1,
            )
            .replacen(
                "outputArtifacts: [{name: Src}]",
                "outputArtifacts: [{name: Src}, {name: Two}]",
                1,
            ),
    );
    assert!(
        e.contains("Build/Compile has 0 input artifacts; a Build CodeBuild action takes 1 to 5"),
        "{e}"
    );
    assert!(
        e.contains("Deploy/Approve has 1 input artifact; a Approval Manual action takes none"),
        "{e}"
    );
    assert!(
        e.contains("Deploy/Ship has 1 output artifact; a Deploy CodeDeploy action takes none"),
        "{e}"
    );
    assert!(
        e.contains(
            "Source/Checkout has 2 output artifacts; a Source CodeCommit action takes exactly 1"
        ),
        "{e}"
    );
}

#[test]
fn required_configuration_is_named_with_the_key_meant() {
    let e = errors(
        &base("{ProjectName: app-build}", "{ProjectNme: app-build}").replacen(
            "BranchName: main",
            "Branch: main",
            1,
        ),
    );
    assert!(
        e.contains(
            "15:17 Build/Compile: a CodeBuild action needs `ProjectName` in its configuration"
        ),
        "{e}"
    );
    assert!(
        e.contains("is `ProjectNme` meant to be `ProjectName`?"),
        "{e}"
    );
    assert!(
        e.contains("Source/Checkout: a CodeCommit action needs `BranchName`"),
        "{e}"
    );
}

#[test]
fn unsupported_providers_are_named_with_what_kiln_runs() {
    let text = base(
        "category: Deploy, owner: AWS, provider: CodeDeploy, version: \"1\"}",
        "category: Deploy, owner: AWS, provider: CloudFormation, version: \"1\"}",
    );
    let e = errors(&text);
    assert!(
        e.contains("28:66 Deploy/Ship: kiln does not run Deploy actions of provider CloudFormation (owner AWS)"),
        "{e}"
    );
    assert!(e.contains("Deploy actions CodeDeploy"), "{e}");
    let options = LoadOptions {
        claimed: vec![("Deploy".into(), "AWS".into(), "CloudFormation".into())],
        ..LoadOptions::default()
    };
    let loaded = parse(Path::new("p.yml"), &text, &options).unwrap();
    assert_eq!(
        loaded.pipelines[0].stages[2].actions[1]
            .action_type_id
            .provider,
        "CloudFormation"
    );
}

#[test]
fn namespaces_are_unique_and_read_only_after_they_run() {
    let e = errors(&base("namespace: BuildVars", "namespace: SourceVars"));
    assert!(
        e.contains("21:22 the namespace `SourceVars` is already the namespace of Source/Checkout"),
        "{e}"
    );
    let text = base(
        "{ProjectName: app-build}",
        "{ProjectName: \"app-#{SourceVars.BranchName}\", PrimarySource: \"#{BuildVars.X}\"}",
    );
    let e = errors(&text);
    assert!(
        e.contains("18:87 `#{BuildVars.X}` in `PrimarySource` of Build/Compile reads the namespace of Build/Compile, which does not run before it"),
        "{e}"
    );
    assert!(!e.contains("SourceVars.BranchName"), "{e}");
    let e = errors(&base(
        "{ProjectName: app-build}",
        "{ProjectName: \"#{SourceVar.CommitId}\"}",
    ));
    assert!(
        e.contains("names the namespace `SourceVar`, which no action has"),
        "{e}"
    );
    assert!(e.contains("did you mean `SourceVars`?"), "{e}");
}

#[test]
fn pipeline_variables_and_the_execution_id_are_readable() {
    let text = base(
        "  name: demo\n",
        "  name: demo\n  pipelineType: V2\n  variables: [{name: Stage, defaultValue: prod}]\n",
    )
    .replacen(
        "{ProjectName: app-build}",
        "{ProjectName: \"#{variables.Stage}-#{codepipeline.PipelineExecutionId}\"}",
        1,
    );
    let loaded = ok(&text);
    assert_eq!(
        loaded.pipelines[0].variables[0].default_value.as_deref(),
        Some("prod")
    );
    let e = errors(&text.replace("#{variables.Stage}", "#{variables.Stag}"));
    assert!(e.contains("`#{variables.Stag}` in `ProjectName` of Build/Compile names no pipeline variable | the pipeline variables are Stage"), "{e}");
    let e = errors(&text.replace("PipelineExecutionId", "PipelineName"));
    assert!(
        e.contains("the codepipeline namespace has no `PipelineName`"),
        "{e}"
    );
}

#[test]
fn environment_variables_are_read_for_the_executor_and_checked() {
    let mut config = BTreeMap::new();
    config.insert(
        "EnvironmentVariables".to_string(),
        r#"[{"name":"A","value":"1"},{"name":"B","value":"/p","type":"PARAMETER_STORE"},{"name":"C","value":"s:k","type":"SECRETS_MANAGER"}]"#.to_string(),
    );
    let vars = environment_variables(&config).unwrap();
    assert_eq!(
        vars[0],
        EnvVar {
            name: "A".into(),
            value: "1".into(),
            kind: EnvKind::Plaintext
        }
    );
    assert_eq!(vars[1].kind, EnvKind::ParameterStore);
    assert_eq!(vars[2].kind, EnvKind::SecretsManager);
    assert!(environment_variables(&BTreeMap::new()).unwrap().is_empty());
    let e = errors(&base(
        "{ProjectName: app-build}",
        "{ProjectName: app-build, EnvironmentVariables: '[{\"name\": \"A\", \"value\": \"1\", \"type\": \"SECRET\"}]'}",
    ));
    assert!(
        e.contains("18:73 Build/Compile: the environment variable `A` has type `SECRET`"),
        "{e}"
    );
    let e = errors(&base(
        "{ProjectName: app-build}",
        "{ProjectName: app-build, EnvironmentVariables: 'A=1'}",
    ));
    assert!(e.contains("EnvironmentVariables is not a JSON list"), "{e}");
}

#[test]
fn execution_modes_triggers_and_variables_need_v2() {
    let text = base(
        "  name: demo\n",
        "  name: demo\n  executionMode: PARALLEL\n  variables: [{name: v}]\n  triggers:\n    - providerType: CodeStarSourceConnection\n      gitConfiguration: {sourceActionName: Checkout}\n",
    );
    let e = errors(&text);
    assert!(
        e.contains(
            "3:18 executionMode PARALLEL needs pipelineType V2; this pipeline is V1 (the default)"
        ),
        "{e}"
    );
    assert!(e.contains("6:21 triggers need pipelineType V2"), "{e}");
    assert!(
        e.contains("4:22 pipeline variables need pipelineType V2"),
        "{e}"
    );
    let loaded = ok(&text.replacen("  name: demo\n", "  name: demo\n  pipelineType: V2\n", 1));
    assert_eq!(loaded.pipelines[0].execution_mode, ExecutionMode::Parallel);
    assert_eq!(
        loaded.pipelines[0].triggers[0]
            .git_configuration
            .source_action_name,
        "Checkout"
    );
    let e = errors(&base(
        "  name: demo\n",
        "  name: demo\n  executionMode: SOMETIMES\n  pipelineType: V3\n",
    ));
    assert!(e.contains("3:18 unknown executionMode `SOMETIMES`"), "{e}");
    assert!(e.contains("4:17 unknown pipelineType `V3`"), "{e}");
}

#[test]
fn a_trigger_names_a_source_action_of_the_first_stage() {
    let text = base(
        "  name: demo\n",
        "  name: demo\n  pipelineType: V2\n  triggers:\n    - providerType: CodeStarSourceConnection\n      gitConfiguration:\n        sourceActionName: Compile\n        push: [{branches: {includes: [main, 'release/**'], excludes: [wip]}, filePaths: {includes: ['src/**']}}]\n",
    );
    let e = errors(&text);
    assert!(e.contains("7:27 the trigger names the source action `Compile`, which is not a Source action of the first stage | the Source actions are: Checkout"), "{e}");
    let loaded = ok(&text.replace("sourceActionName: Compile", "sourceActionName: Checkout"));
    let push = &loaded.pipelines[0].triggers[0].git_configuration.push[0];
    assert_eq!(
        push.branches.as_ref().unwrap().includes,
        ["main", "release/**"]
    );
    assert_eq!(push.branches.as_ref().unwrap().excludes, ["wip"]);
    assert_eq!(push.file_paths.as_ref().unwrap().includes, ["src/**"]);
    assert!(push.tags.is_none());
}

#[test]
fn every_error_is_reported_at_once() {
    let e = errors(
        &base("runOrder: 2", "runOrder: 0")
            .replacen("name: Compile", "name: a/b", 1)
            .replacen("{name: Bin}]\nmetadata", "{name: Nope}]\nmetadata", 1),
    );
    assert_eq!(e.lines().count(), 3, "{e}");
}

// CloudFormation templates.

const TEMPLATE: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Branch:
    Type: String
    Default: main
  Env:
    Type: String
    Default: dev
  Regions:
    Type: CommaDelimitedList
    Default: "eu-west-1, us-east-1"
Mappings:
  Sizes:
    dev: {Group: dev-hosts}
    prod: {Group: prod-hosts}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [{Condition: NotProd}, !Equals [a, a]]
  Either: {"Fn::Or": [{Condition: IsProd}, {"Fn::Equals": [x, y]}]}
Resources:
  Build:
    Type: AWS::CodeBuild::Project
    Properties:
      Name: !Sub "${AWS::StackName}-build"
  Bucket:
    Type: AWS::S3::Bucket
  Pipeline:
    Type: AWS::CodePipeline::Pipeline
    Properties:
      RoleArn: !GetAtt PipelineRole.Arn
      ArtifactStore: {Type: S3, Location: !Ref Bucket}
      Stages:
        - Name: Source
          Actions:
            - Name: Checkout
              ActionTypeId: {Category: Source, Owner: AWS, Provider: CodeCommit, Version: 1}
              Configuration:
                RepositoryName: !Join ["-", [app, !Select [1, !Split [",", "a,b,c"]]]]
                BranchName: !Ref Branch
                PollForSourceChanges: false
                Extra: !If [IsProd, !GetAtt Nowhere.Arn, !Ref "AWS::NoValue"]
              OutputArtifacts: [{Name: Src}]
        - Name: Build
          Actions:
            - Name: Compile
              ActionTypeId: {Category: Build, Owner: AWS, Provider: CodeBuild, Version: "1"}
              RunOrder: 1
              Configuration:
                ProjectName: !Ref Build
                EnvironmentVariables: !Sub
                  - '[{"name":"REGION","value":"${AWS::Region}"},{"name":"ENV","value":"${Env}-${Suffix}"},{"name":"LIT","value":"${!Literal}"}]'
                  - Suffix: !FindInMap [Sizes, !Ref Env, Group]
                Mode: !If [NotProd, !If [Both, both, notboth], prod]
                Or: !If [Either, yes, no]
                Acct: !Sub "${AWS::AccountId}:${AWS::Partition}:${AWS::URLSuffix}"
                Enc: !Base64 hi
                Second: !Select [1, !Ref Regions]
              InputArtifacts: [{Name: Src}]
"#;

fn template(text: &str, parameters: &[(&str, &str)]) -> Result<Loaded, SpecError> {
    parse_as("stack.yml", text, parameters)
}

#[test]
fn a_template_resolves_its_intrinsics() {
    let loaded = template(TEMPLATE, &[]).unwrap_or_else(|e| panic!("{e}"));
    let p = &loaded.pipelines[0];
    assert_eq!(
        p.name, "Pipeline",
        "a pipeline without Name takes its logical id"
    );
    assert_eq!(p.artifact_store.as_ref().unwrap().location, "Bucket");
    let checkout = &p.stages[0].actions[0].configuration;
    assert_eq!(checkout["RepositoryName"], "app-b");
    assert_eq!(checkout["BranchName"], "main");
    assert_eq!(checkout["PollForSourceChanges"], "false");
    assert!(
        !checkout.contains_key("Extra"),
        "AWS::NoValue drops the key"
    );
    assert_eq!(p.stages[0].actions[0].action_type_id.version, "1");
    let compile = &p.stages[1].actions[0].configuration;
    assert_eq!(compile["ProjectName"], "stack-build");
    let region = template::local_region();
    assert_eq!(
        compile["EnvironmentVariables"],
        format!(
            r#"[{{"name":"REGION","value":"{region}"}},{{"name":"ENV","value":"dev-dev-hosts"}},{{"name":"LIT","value":"${{Literal}}"}}]"#
        )
    );
    assert_eq!(compile["Mode"], "both");
    assert_eq!(compile["Or"], "no");
    assert_eq!(compile["Acct"], "000000000000:aws:amazonaws.com");
    assert_eq!(compile["Enc"], "aGk=");
    assert_eq!(compile["Second"], "us-east-1");
}

#[test]
fn parameters_given_override_defaults() {
    let loaded = template(TEMPLATE, &[("Env", "prod"), ("Branch", "release")]);
    // With Env=prod the unresolvable branch of the If is taken: an error in a field kiln uses.
    let e = findings(&loaded.unwrap_err().diagnostics);
    assert!(e.contains("42:45 the configuration value `Extra`: `Fn::GetAtt Nowhere.Arn` is only known once AWS has created the resource"), "{e}");
    let text = TEMPLATE.replace(
        "!If [IsProd, !GetAtt Nowhere.Arn, !Ref \"AWS::NoValue\"]",
        "x",
    );
    let loaded = template(&text, &[("Env", "prod"), ("Branch", "release")]).unwrap();
    let p = &loaded.pipelines[0];
    assert_eq!(
        p.stages[0].actions[0].configuration["BranchName"],
        "release"
    );
    assert_eq!(p.stages[1].actions[0].configuration["Mode"], "prod");
    assert_eq!(p.stages[1].actions[0].configuration["Or"], "yes");
    assert!(
        p.stages[1].actions[0].configuration["EnvironmentVariables"].contains("prod-prod-hosts")
    );
}

#[test]
fn a_parameter_without_a_value_asks_for_one() {
    let text = TEMPLATE.replace(
        "    Type: String\n    Default: main\n",
        "    Type: String\n",
    );
    let e = errors_of(template(&text, &[]));
    assert!(
        e.contains("39:34 the configuration value `BranchName`: the parameter `Branch` has no value: it has no Default | give --parameter Branch=VALUE"),
        "{e}"
    );
    let loaded = template(&text, &[("Branch", "dev")]).unwrap();
    assert_eq!(
        loaded.pipelines[0].stages[0].actions[0].configuration["BranchName"],
        "dev"
    );
}

fn errors_of(r: Result<Loaded, SpecError>) -> String {
    match r {
        Ok(l) => panic!("expected errors, got {:?}", l.pipelines),
        Err(e) => findings(&e.errors().cloned().collect::<Vec<_>>()),
    }
}

#[test]
fn unresolvable_values_are_errors_only_where_kiln_reads_them() {
    // RoleArn is a GetAtt in TEMPLATE and it loads; in a name it is an error naming the intrinsic.
    let e = errors_of(template(
        &TEMPLATE.replace("- Name: Compile", "- Name: !ImportValue shared-name"),
        &[],
    ));
    assert!(
        e.contains("the action's name: `Fn::ImportValue shared-name` reads another stack's export"),
        "{e}"
    );
    let e = errors_of(template(
        &TEMPLATE.replace(
            "ProjectName: !Ref Build",
            "ProjectName: !Sub '${Build.Arn}'",
        ),
        &[],
    ));
    assert!(
        e.contains("`Fn::GetAtt Build.Arn` is only known once AWS has created the resource"),
        "{e}"
    );
    let e = errors_of(template(
        &TEMPLATE.replace("ProjectName: !Ref Build", "ProjectName: !Ref Nothing"),
        &[],
    ));
    assert!(
        e.contains("`Ref Nothing` names neither a parameter, a pseudo parameter nor a resource"),
        "{e}"
    );
    let e = errors_of(template(
        &TEMPLATE.replace("ProjectName: !Ref Build", "ProjectName: !GetAZs ''"),
        &[],
    ));
    assert!(e.contains("kiln cannot resolve `Fn::GetAZs`"), "{e}");
}

#[test]
fn long_form_intrinsics_in_a_json_template() {
    let json = r#"{
  "Parameters": {"Repo": {"Type": "String", "Default": "svc"}},
  "Resources": {
    "Pipe": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {
      "Name": {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "pipe"]]},
      "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
      "Stages": [
        {"Name": "Source", "Actions": [{"Name": "S", "ActionTypeId": {"Category": "Source", "Owner": "AWS", "Provider": "CodeCommit", "Version": "1"},
          "Configuration": {"RepositoryName": {"Ref": "Repo"}, "BranchName": {"Fn::Sub": ["${B}", {"B": "main"}]}},
          "OutputArtifacts": [{"Name": "Out"}]}]},
        {"Name": "Build", "Actions": [{"Name": "B", "ActionTypeId": {"Category": "Build", "Owner": "AWS", "Provider": "CodeBuild", "Version": "1"},
          "Configuration": {"ProjectName": {"Fn::FindInMap": ["M", "a", "b", {"DefaultValue": "fallback"}]}},
          "InputArtifacts": [{"Name": "Out"}], "RunOrder": 2}]}
      ]}}}}"#;
    let loaded = parse_as("my-stack.json", json, &[]).unwrap_or_else(|e| panic!("{e}"));
    let p = &loaded.pipelines[0];
    assert_eq!(p.name, "my-stack-pipe");
    assert_eq!(
        p.stages[0].actions[0].configuration["RepositoryName"],
        "svc"
    );
    assert_eq!(p.stages[0].actions[0].configuration["BranchName"], "main");
    assert_eq!(
        p.stages[1].actions[0].configuration["ProjectName"],
        "fallback"
    );
    assert_eq!(p.stages[1].actions[0].run_order, 2);
}

#[test]
fn two_pipelines_are_both_read_and_selected_by_name() {
    let second = "  Other:\n    Type: AWS::CodePipeline::Pipeline\n    Properties:\n      Name: other\n      Stages: []\n";
    let e = errors_of(template(&format!("{TEMPLATE}{second}"), &[]));
    assert!(e.contains("the pipeline has 0 stages"), "{e}");
    let valid = TEMPLATE.to_string()
        + "  Other:\n    Type: AWS::CodePipeline::Pipeline\n    Properties:\n      Name: other\n"
        + &TEMPLATE[TEMPLATE.find("      Stages:").unwrap()..];
    let loaded = template(&valid, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.pipelines.len(), 2);
    assert_eq!(select(&loaded, Some("other")).unwrap().name, "other");
    let ambiguous = select(&loaded, None).unwrap_err();
    assert!(
        ambiguous.contains("holds 2 pipelines (Pipeline, other)"),
        "{ambiguous}"
    );
    let unknown = select(&loaded, Some("nope")).unwrap_err();
    assert!(
        unknown.contains("no pipeline named `nope`; it holds Pipeline, other"),
        "{unknown}"
    );
}

#[test]
fn a_pipeline_whose_condition_is_false_is_not_created() {
    let text = TEMPLATE.replace(
        "    Type: AWS::CodePipeline::Pipeline\n",
        "    Type: AWS::CodePipeline::Pipeline\n    Condition: IsProd\n",
    );
    let loaded = template(&text, &[]).unwrap();
    assert!(loaded.pipelines.is_empty());
    assert!(findings(&loaded.warnings).contains("the condition `IsProd` is false"));
}

#[test]
fn a_template_without_a_pipeline_says_so() {
    let e = errors_of(template(
        "Resources:\n  B:\n    Type: AWS::S3::Bucket\n",
        &[],
    ));
    assert!(
        e.contains("2:3 this template has no AWS::CodePipeline::Pipeline resource"),
        "{e}"
    );
}

#[test]
fn cycles_and_deep_nesting_stop_with_an_error() {
    let cyc = TEMPLATE.replace(
        "  IsProd: !Equals [!Ref Env, prod]",
        "  IsProd: !Not [!Condition NotProd]",
    );
    let e = errors_of(template(&cyc, &[]));
    assert!(e.contains("depends on itself"), "{e}");
    let deep = format!("{}x{}", "!Join ['', [".repeat(40), "]]".repeat(40));
    let text = TEMPLATE.replace("ProjectName: !Ref Build", &format!("ProjectName: {deep}"));
    let e = errors_of(template(&text, &[]));
    assert!(e.contains("nest deeper than"), "{e}");
    let selfref = TEMPLATE.replace("Name: !Sub \"${AWS::StackName}-build\"", "Name: !Ref Build");
    let e = errors_of(template(&selfref, &[]));
    assert!(
        e.contains("the name of the resource `Build` refers back to itself"),
        "{e}"
    );
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    doc.push_str("pipeline: {name: x, stages: *a8}\n");
    let e = errors_of(parse_as("p.yml", &doc, &[]));
    assert!(e.contains("aliases are expanded"), "{e}");
}

#[test]
fn pipeline_files_are_recognised_by_name_or_content() {
    assert!(is_pipeline_file(Path::new("ci/pipeline.json"), ""));
    assert!(is_pipeline_file(Path::new("deploy.pipeline.yml"), ""));
    assert!(is_pipeline_file(Path::new("template.yaml"), ""));
    assert!(is_pipeline_file(Path::new("x.json"), BASE));
    assert!(is_pipeline_file(Path::new("stack.yml"), TEMPLATE));
    assert!(!is_pipeline_file(
        Path::new("buildspec.yml"),
        "version: 0.2\nphases: {}\n"
    ));
}

#[test]
fn one_artifact_store_is_kept_of_several_regions() {
    let text = base(
        "  artifactStore: {type: S3, location: artifacts-bucket}\n",
        "  artifactStores:\n    eu-west-1: {type: S3, location: eu-bucket}\n    us-east-1: {type: S3, location: us-bucket}\n",
    );
    let loaded = ok(&text);
    assert_eq!(
        loaded.pipelines[0]
            .artifact_store
            .as_ref()
            .unwrap()
            .location,
        "eu-bucket"
    );
    let w = findings(&loaded.warnings);
    assert!(w.contains("5:5 warning: kiln keeps a pipeline's artifacts in one store: it uses the one given for eu-west-1"), "{w}");
    let both = text.replacen(
        "  artifactStores:",
        "  artifactStore: {type: S3, location: b}\n  artifactStores:",
        1,
    );
    let e = errors(&both);
    assert!(
        e.contains("the pipeline gives both artifactStore and artifactStores"),
        "{e}"
    );
    let cfn = TEMPLATE.replace(
        "      ArtifactStore: {Type: S3, Location: !Ref Bucket}\n",
        "      ArtifactStores:\n        - Region: !Ref AWS::Region\n          ArtifactStore: {Type: S3, Location: regional}\n",
    );
    let loaded = template(&cfn, &[]).unwrap();
    assert_eq!(
        loaded.pipelines[0]
            .artifact_store
            .as_ref()
            .unwrap()
            .location,
        "regional"
    );
}

#[test]
fn a_store_of_another_type_is_an_error() {
    let e = errors(&base("{type: S3, location", "{type: GCS, location"));
    assert!(e.contains("4:25 unknown artifact store type `GCS`"), "{e}");
}

#[test]
fn cut_short_anywhere_a_file_is_an_error_never_a_panic() {
    for text in [BASE, TEMPLATE] {
        let mut end = 0;
        while end < text.len() {
            if text.is_char_boundary(end) {
                let _ = parse_as("p.yml", &text[..end], &[]);
                let _ = parse_as("p.json", &text[..end].replace(':', "\":\""), &[]);
            }
            end += 11;
        }
    }
}

#[test]
fn every_value_of_the_wrong_type_is_an_error_not_a_panic() {
    for from in [
        "name: demo",
        "stages:",
        "actionTypeId: {category: Source, owner: AWS, provider: CodeCommit, version: \"1\"}",
        "configuration: {RepositoryName: app, BranchName: main}",
        "outputArtifacts: [{name: Src}]",
        "runOrder: 1",
        "namespace: SourceVars",
    ] {
        let key = from.split(':').next().unwrap();
        for to in ["[]", "{}", "~", "[[x]]", "{a: {b: c}}"] {
            let text = base(from, &format!("{key}: {to}"));
            let r = parse_as("p.yml", &text, &[]);
            assert!(r.is_err() || to == "~" || to == "[]", "{key}: {to}");
        }
    }
}

#[test]
fn a_file_past_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_FILE + 1).unwrap();
    let e = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("a pipeline declaration is at most"),
        "{e}"
    );
}

#[test]
fn many_references_resolve_in_linear_time() {
    let mut params = String::from("Parameters:\n");
    for i in 0..3000 {
        params.push_str(&format!("  P{i}: {{Type: String, Default: v{i}}}\n"));
    }
    let refs: Vec<String> = (0..3000).map(|i| format!("!Ref P{i}")).collect();
    let text = TEMPLATE.replacen("Parameters:\n", &params, 1).replace(
        "                Enc: !Base64 hi\n",
        &format!("                Enc: !Join [',', [{}]]\n", refs.join(", ")),
    );
    let started = std::time::Instant::now();
    let loaded = template(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.pipelines[0].stages[1].actions[0].configuration["Enc"].ends_with(",v2999"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_resource_given_twice_is_an_error_at_the_second() {
    let text = TEMPLATE.replace(
        "  Bucket:\n    Type: AWS::S3::Bucket\n",
        "  Bucket:\n    Type: AWS::S3::Bucket\n  Bucket:\n    Type: AWS::S3::Bucket\n",
    );
    let e = errors_of(template(&text, &[]));
    assert!(
        e.contains("28:3 `Bucket` is given twice in Resources"),
        "{e}"
    );
}

#[test]
fn a_name_attribute_is_the_physical_name_and_unused_credentials_may_stay_unresolved() {
    let text = TEMPLATE
        .replace("ProjectName: !Ref Build", "ProjectName: !GetAtt Build.Name")
        .replace(
            "PollForSourceChanges: false",
            "PollForSourceChanges: false\n                OAuthToken: !Ref Token",
        )
        .replace(
            "Parameters:\n",
            "Parameters:\n  Token:\n    Type: String\n    NoEcho: true\n",
        );
    let loaded = template(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let p = &loaded.pipelines[0];
    assert_eq!(
        p.stages[1].actions[0].configuration["ProjectName"],
        "stack-build"
    );
    assert_eq!(p.stages[0].actions[0].configuration["OAuthToken"], "");
    let w = findings(&loaded.warnings);
    assert!(w.contains("warning: kiln does not use `OAuthToken`, so it is left empty: the parameter `Token` has no value"), "{w}");
}

#[test]
fn a_misspelt_provider_is_matched_within_its_category_only() {
    let e = errors(&base("provider: CodeDeploy", "provider: ECS"));
    assert!(
        e.contains("kiln does not run Deploy actions of provider ECS (owner AWS) |"),
        "{e}"
    );
    let e = errors(&base("provider: CodeBuild", "provider: CodeBiuld"));
    assert!(
        e.contains("provider CodeBiuld (owner AWS) (did you mean `CodeBuild`?)"),
        "{e}"
    );
}

#[test]
fn a_parameter_given_where_it_has_no_use_is_warned_about() {
    let loaded = parse_as("pipeline.yml", BASE, &[("Branch", "x")]).unwrap();
    let w = findings(&loaded.warnings);
    assert!(
        w.contains("`--parameter Branch` is for CloudFormation templates"),
        "{w}"
    );
    let loaded = template(TEMPLATE, &[("Nope", "x")]).unwrap();
    let w = findings(&loaded.warnings);
    assert!(
        w.contains("`--parameter Nope` is given but the template declares no parameter `Nope`"),
        "{w}"
    );
}

#[test]
fn places_point_at_each_action_and_its_configuration() {
    let loaded = ok(BASE);
    let places = super::places(&loaded, &LoadOptions::default());
    let ship = &places[0].stages[2].actions[1];
    assert_eq!((ship.name.line, ship.name.column), (27, 17));
    assert_eq!(ship.configuration["DeploymentGroupName"].line, 30);
    assert_eq!(ship.inputs[0].line, 31);
    assert_eq!(places[0].stages[1].name.line, 13);
}

#[test]
fn a_ref_gives_the_name_property_of_the_resource_type() {
    let text = TEMPLATE
        .replace(
            "  Bucket:\n    Type: AWS::S3::Bucket\n",
            "  Bucket:\n    Type: AWS::S3::Bucket\n  App:\n    Type: AWS::CodeDeploy::Application\n    Properties: {ApplicationName: web}\n  Group:\n    Type: AWS::CodeDeploy::DeploymentGroup\n    Properties:\n      ApplicationName: !Ref App\n      DeploymentGroupName: !Sub '${Env}-group'\n  Repo:\n    Type: AWS::CodeCommit::Repository\n    Properties: {RepositoryName: code, Code: {BranchName: main}}\n",
        )
        .replace("PollForSourceChanges: false", "PollForSourceChanges: false\n                App: !Ref App\n                Group: !Ref Group\n                Repo: !GetAtt Repo.Name");
    let loaded = template(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.pipelines[0].stages[0].actions[0].configuration;
    assert_eq!(c["App"], "web");
    assert_eq!(c["Group"], "dev-group");
    assert_eq!(c["Repo"], "code");
}

#[test]
fn a_character_changed_anywhere_is_an_error_or_a_pipeline_never_a_panic() {
    const BAD: [char; 8] = ['{', '!', '*', '&', ':', '-', '"', '['];
    for text in [BASE, TEMPLATE] {
        let chars: Vec<char> = text.chars().collect();
        for i in (0..chars.len()).step_by(3) {
            let mut changed = chars.clone();
            changed[i] = BAD[(i / 3) % BAD.len()];
            let changed: String = changed.into_iter().collect();
            let _ = parse_as("p.yml", &changed, &[]);
        }
    }
}

#[test]
fn create_pipeline_input_with_tags_reads_without_warnings() {
    let text = BASE.replace("metadata:", "tags: [{key: team, value: web}]\nmetadata:");
    let loaded = ok(&text);
    assert!(loaded.warnings.is_empty(), "{}", findings(&loaded.warnings));
    let loaded = ok(&BASE.replace("metadata:", "extra: 1\nmetadata:"));
    assert!(findings(&loaded.warnings).contains("unknown key `extra` in the file"));
}
