//! The properties a secure, observable deployment depends on, read from template.yaml.

use std::collections::{BTreeSet, HashMap};

use sentinel_sam::{
    of_type, one_or_many, references, references_unless, resources, root, template,
};
use serde_json::{json, Value};

/// Every function; all but the last (the deploy-time migrator) are services with alarms.
const FUNCTIONS: [(&str, &str); 6] = [
    ("IngestFunction", "ingest"),
    ("WriterFunction", "writer"),
    ("QueryFunction", "query"),
    ("ArchiverFunction", "archiver"),
    ("CheckpointerFunction", "checkpointer"),
    ("MigrateFunction", "migrate"),
];

/// The functions that connect to PostgreSQL with a login of their own, and its secret.
const DATABASE_LOGINS: [(&str, &str); 4] = [
    ("WriterFunction", "WriterDatabaseSecret"),
    ("QueryFunction", "ReaderDatabaseSecret"),
    ("ArchiverFunction", "ArchiverDatabaseSecret"),
    ("CheckpointerFunction", "CheckpointerDatabaseSecret"),
];

fn resource<'a>(template: &'a Value, id: &str) -> &'a Value {
    template["Resources"]
        .get(id)
        .unwrap_or_else(|| panic!("template.yaml has no resource {id}"))
}

fn props<'a>(template: &'a Value, id: &str) -> &'a Value {
    &resource(template, id)["Properties"]
}

fn reference(id: &str) -> Value {
    json!({ "Ref": id })
}

fn arn_of(id: &str) -> Value {
    json!({ "Fn::GetAtt": [id, "Arn"] })
}

/// A property with the global default applied (`Globals.Function`).
fn function_setting<'a>(template: &'a Value, id: &str, key: &str) -> &'a Value {
    let own = &props(template, id)[key];
    if own.is_null() {
        &template["Globals"]["Function"][key]
    } else {
        own
    }
}

#[test]
fn every_function_is_an_arm64_cargo_lambda_build_of_a_workspace_binary() {
    let template = template();
    let serverless = of_type(&template, "AWS::Serverless::Function");
    assert_eq!(serverless.len(), FUNCTIONS.len());
    for (id, binary) in FUNCTIONS {
        let function = resource(&template, id);
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{id}"
        );
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"], binary,
            "{id}"
        );
        assert_eq!(
            function_setting(&template, id, "Runtime"),
            "provided.al2023",
            "{id}"
        );
        assert_eq!(
            function_setting(&template, id, "Architectures"),
            &json!(["arm64"]),
            "{id}"
        );
        assert_eq!(function_setting(&template, id, "Handler"), "bootstrap");
        // The binary is a crate of the workspace with a main.rs, so `Binary:` builds.
        let crate_dir = root().join("functions").join(binary);
        assert!(
            crate_dir.join("src/main.rs").exists(),
            "{id}: no binary {binary}"
        );
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{id}");
    }
}

#[test]
fn every_function_logs_json_to_its_own_log_group_with_a_retention() {
    let template = template();
    let mut groups = BTreeSet::new();
    for (id, _) in FUNCTIONS {
        let logging = &props(&template, id)["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{id}");
        assert_eq!(
            logging["ApplicationLogLevel"],
            reference("LogLevel"),
            "{id}"
        );
        let group = logging["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} names no log group"));
        let log_group = resource(&template, group);
        assert_eq!(log_group["Type"], "AWS::Logs::LogGroup");
        assert_eq!(
            log_group["Properties"]["RetentionInDays"],
            reference("LogRetentionDays")
        );
        assert!(groups.insert(group.to_string()), "{group} is shared");
    }
    let stage = props(&template, "ApiStage");
    assert_eq!(
        stage["AccessLogSettings"]["DestinationArn"],
        arn_of("ApiAccessLogGroup")
    );
}

/// The operations openapi.yaml documents, as API Gateway route keys.
fn documented_routes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let spec = sentinel_sam::parse(&text);
    let mut routes = BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

#[test]
fn the_api_has_exactly_the_documented_routes_and_the_consoles_and_every_data_route_is_authorized() {
    let template = template();
    let routes = of_type(&template, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<String> = routes
        .iter()
        .map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap().to_string())
        .collect();
    // The console's files are served by the query function too, and are not API operations.
    let console = ["GET /console", "GET /console/{file+}"];
    let mut expected = documented_routes();
    expected.extend(console.map(String::from));
    assert_eq!(keys, expected);
    for (id, route) in routes {
        let properties = &route["Properties"];
        // The console's files hold no data, and a browser loads them before it has a token.
        if console.contains(&properties["RouteKey"].as_str().unwrap()) {
            assert_eq!(properties["AuthorizationType"], "NONE", "{id}");
            continue;
        }
        // IAM or JWT by AuthMode: never NONE, on every route.
        assert_eq!(
            properties["AuthorizationType"],
            json!({"Fn::If": ["JwtAuth", "JWT", "AWS_IAM"]}),
            "{id}"
        );
        assert_eq!(
            properties["AuthorizerId"],
            json!({"Fn::If": ["JwtAuth", {"Ref": "JwtAuthorizer"}, {"Ref": "AWS::NoValue"}]}),
            "{id}"
        );
    }
    assert_eq!(template["Parameters"]["AuthMode"]["Default"], "IAM");
    assert_eq!(
        template["Parameters"]["AuthMode"]["AllowedValues"],
        json!(["IAM", "JWT"])
    );
    let authorizer = props(&template, "JwtAuthorizer");
    assert_eq!(authorizer["AuthorizerType"], "JWT");
    assert_eq!(
        authorizer["JwtConfiguration"]["Issuer"],
        reference("JwtIssuer")
    );
    // No other way in: no SAM-generated API, no function URL.
    for kind in [
        "AWS::Serverless::Api",
        "AWS::Serverless::HttpApi",
        "AWS::Lambda::Url",
    ] {
        assert!(of_type(&template, kind).is_empty(), "{kind}");
    }
    for (id, _) in FUNCTIONS {
        let events = props(&template, id)["Events"].as_object();
        for (name, event) in events.into_iter().flatten() {
            assert!(
                event["Type"] != "HttpApi" && event["Type"] != "Api",
                "{id}.{name} would add an API route outside the authorized ones"
            );
        }
        assert!(
            props(&template, id)["FunctionUrlConfig"].is_null(),
            "{id} has a function URL"
        );
    }
}

#[test]
fn the_api_is_throttled_and_cors_is_a_parameter() {
    let template = template();
    let stage = props(&template, "ApiStage");
    assert_eq!(stage["StageName"], "$default");
    let settings = &stage["DefaultRouteSettings"];
    assert_eq!(
        settings["ThrottlingBurstLimit"],
        reference("ThrottlingBurstLimit")
    );
    assert_eq!(
        settings["ThrottlingRateLimit"],
        reference("ThrottlingRateLimit")
    );
    let cors = &props(&template, "HttpApi")["CorsConfiguration"]["Fn::If"];
    assert_eq!(cors[0], "CorsOn");
    assert_eq!(cors[1]["AllowOrigins"], reference("CorsAllowOrigins"));
    assert_eq!(cors[2], reference("AWS::NoValue"));
    // Lambda permissions are scoped to this API's routes.
    for id in ["IngestApiPermission", "QueryApiPermission"] {
        let source = props(&template, id)["SourceArn"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert!(source.contains("${HttpApi}/*/"), "{id}: {source}");
    }
}

#[test]
fn the_stream_is_encrypted_and_on_demand_unless_provisioned() {
    let template = template();
    let stream = props(&template, "EventStream");
    assert_eq!(
        stream["StreamModeDetails"]["StreamMode"],
        reference("StreamMode")
    );
    assert_eq!(template["Parameters"]["StreamMode"]["Default"], "ON_DEMAND");
    assert_eq!(
        stream["ShardCount"],
        json!({"Fn::If": ["Provisioned", {"Ref": "StreamShardCount"}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(stream["StreamEncryption"]["EncryptionType"], "KMS");
    assert!(stream["StreamEncryption"]["KeyId"].is_string());
}

fn writer_stream_event(template: &Value) -> &Value {
    let events = props(template, "WriterFunction")["Events"]
        .as_object()
        .unwrap();
    let kinesis: Vec<&Value> = events.values().filter(|e| e["Type"] == "Kinesis").collect();
    assert_eq!(kinesis.len(), 1, "the writer has one Kinesis event source");
    &kinesis[0]["Properties"]
}

#[test]
fn the_writer_reads_the_stream_with_partial_batch_failures_and_an_on_failure_queue() {
    let template = template();
    let mapping = writer_stream_event(&template);
    assert_eq!(mapping["Stream"], arn_of("EventStream"));
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["BisectBatchOnFunctionError"], true);
    let batch = mapping["BatchSize"].as_u64().unwrap();
    assert!((100..=10_000).contains(&batch), "BatchSize {batch}");
    let window = mapping["MaximumBatchingWindowInSeconds"].as_u64().unwrap();
    assert!(
        window <= 5,
        "a batching window of {window}s delays every event"
    );
    let parallel = mapping["ParallelizationFactor"].as_u64().unwrap();
    assert!((1..=10).contains(&parallel));
    let retries = mapping["MaximumRetryAttempts"].as_i64().unwrap();
    assert!(retries == -1 || (0..=10_000).contains(&retries));
    let on_failure = &mapping["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"], "SQS");
    assert_eq!(on_failure["Destination"], arn_of("WriterFailureQueue"));
    assert_eq!(
        resource(&template, "WriterFailureQueue")["Type"],
        "AWS::SQS::Queue"
    );
    // A batch given up on must still be on the stream when someone reads the queue:
    // the oldest record the mapping retries is younger than the shortest retention.
    let record_age = mapping["MaximumRecordAgeInSeconds"].as_u64().unwrap();
    let retention_hours = template["Parameters"]["StreamRetentionHours"]["MinValue"]
        .as_u64()
        .unwrap();
    assert!(
        record_age < retention_hours * 3600 / 2,
        "records retried for {record_age}s leave no time to replay from a {retention_hours}h stream"
    );
    // The function finishes a full batch well before the mapping would give up on it.
    let timeout = props(&template, "WriterFunction")["Timeout"]
        .as_u64()
        .unwrap();
    assert!(timeout >= 30 && timeout < record_age);
}

#[test]
fn the_archiver_runs_on_its_schedule_and_failed_runs_are_retried() {
    let template = template();
    let archiver = props(&template, "ArchiverFunction");
    let schedules: Vec<&Value> = archiver["Events"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["Type"] == "Schedule" || e["Type"] == "ScheduleV2")
        .collect();
    assert_eq!(schedules.len(), 1);
    assert_eq!(
        schedules[0]["Properties"]["Schedule"],
        reference("ArchiveSchedule")
    );
    assert!(template["Parameters"]["ArchiveSchedule"]["Default"]
        .as_str()
        .unwrap()
        .starts_with("cron("));
    assert_eq!(archiver["Timeout"], 900);
    assert!(archiver["EventInvokeConfig"]["MaximumRetryAttempts"].as_u64() > Some(0));
    let env = &archiver["Environment"]["Variables"];
    assert_eq!(env["ARCHIVE_BUCKET"], reference("ArchiveBucket"));
    assert_eq!(env["RETENTION_MONTHS"], reference("RetentionMonths"));
    assert_eq!(env["PREMAKE_MONTHS"], reference("PremakeMonths"));
    // Every manifest is signed with the archive key, its notes named after the stack as the
    // checkpoints are (Settings::from_env requires both).
    assert_eq!(env["ARCHIVE_SIGNING_KEY_ID"], arn_of("ArchiveSigningKey"));
    assert_eq!(
        env["STACK_NAME"],
        props(&template, "CheckpointerFunction")["Environment"]["Variables"]["STACK_NAME"]
    );
    assert_eq!(env["STACK_NAME"], reference("AWS::StackName"));
    // It starts once it may use the key: it reads the public key at cold start.
    let depends_on = one_or_many(&resource(&template, "ArchiverFunction")["DependsOn"]);
    assert!(depends_on.contains(&&json!("DatabaseMigrations")));
    assert!(depends_on.contains(&&json!("ArchiverSigningPolicy")));
    let policy = props(&template, "ArchiverSigningPolicy");
    assert_eq!(policy["RoleName"], reference("ArchiverRole"));
    let signing: Vec<(Vec<String>, Value)> = grants(&template, "ArchiverRole")
        .into_iter()
        .filter(|(actions, _)| actions.iter().any(|a| a.starts_with("kms:")))
        .collect();
    assert_eq!(
        signing,
        [(
            vec!["kms:Sign".to_string(), "kms:GetPublicKey".into()],
            arn_of("ArchiveSigningKey")
        )]
    );
}

#[test]
fn the_archive_bucket_is_private_encrypted_versioned_tls_only_and_has_lifecycle_rules() {
    let template = template();
    let bucket = props(&template, "ArchiveBucket");
    let encryption = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert!(
        ["AES256", "aws:kms"].contains(
            &encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
                .as_str()
                .unwrap()
        ),
        "{encryption}"
    );
    let block = &bucket["PublicAccessBlockConfiguration"];
    for key in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[key], true, "{key}");
    }
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap();
    let archive = rules
        .iter()
        .find(|r| r["Prefix"] == "audit_events/")
        .expect("a lifecycle rule for the archive prefix");
    assert_eq!(archive["Status"], "Enabled");
    assert!(archive["NoncurrentVersionExpiration"]["NoncurrentDays"].is_u64());
    assert!(archive["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].is_u64());
    assert_eq!(
        resource(&template, "ArchiveBucket")["DeletionPolicy"],
        "Retain"
    );

    assert_tls_only(&template, "ArchiveBucketPolicy", "ArchiveBucket");
}

/// The bucket's policy refuses plain HTTP and TLS older than 1.2, for the bucket and its objects.
fn assert_tls_only(template: &Value, policy: &str, bucket: &str) {
    let policy = props(template, policy);
    assert_eq!(policy["Bucket"], reference(bucket));
    let statements = policy["PolicyDocument"]["Statement"].as_array().unwrap();
    let objects = json!({ "Fn::Sub": format!("${{{bucket}.Arn}}/*") });
    for condition in [
        json!({"Bool": {"aws:SecureTransport": "false"}}),
        json!({"NumericLessThan": {"s3:TlsVersion": "1.2"}}),
    ] {
        let deny = statements
            .iter()
            .find(|s| s["Condition"] == condition)
            .unwrap_or_else(|| panic!("{bucket}: no statement on {condition}"));
        assert_eq!(deny["Effect"], "Deny");
        assert_eq!(deny["Principal"], "*");
        assert_eq!(deny["Action"], "s3:*");
        let resources = one_or_many(&deny["Resource"]);
        assert!(resources.contains(&&arn_of(bucket)), "{bucket}");
        assert!(resources.contains(&&objects), "{bucket}");
    }
}

#[test]
fn athena_reads_the_archive_layout_through_partition_projection() {
    let template = template();
    let table = &props(&template, "ArchiveTable")["TableInput"];
    let parameters = &table["Parameters"];
    assert_eq!(parameters["projection.enabled"], "true");
    for key in ["year", "month"] {
        assert_eq!(parameters[format!("projection.{key}.type")], "integer");
    }
    assert_eq!(parameters["projection.month.range"], "1,12");
    assert_eq!(parameters["projection.month.digits"], "2");
    // The location template is the archiver's own key layout.
    let template_parts = parameters["storage.location.template"]["Fn::Join"][1]
        .as_array()
        .unwrap();
    assert_eq!(template_parts[1], reference("ArchiveBucket"));
    let month = sentinel_domain::Month::new(2024, 2).unwrap();
    assert_eq!(
        format!(
            "{}{}",
            template_parts[2].as_str().unwrap().trim_start_matches('/'),
            "part-00000.parquet"
        )
        .replace("${year}", "2024")
        .replace("${month}", "02"),
        month.part_key(0)
    );
    let keys: Vec<&str> = table["PartitionKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["Name"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["year", "month"]);
    // The columns are the Parquet schema's, in order, with Athena's types.
    let descriptor = &table["StorageDescriptor"];
    assert_eq!(
        descriptor["SerdeInfo"]["SerializationLibrary"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    let columns: Vec<(String, String)> = descriptor["Columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["Name"].as_str().unwrap().to_string(),
                c["Type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let schema = archiver::parquet_file::schema();
    let expected: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| {
            let kind = match format!("{:?}", f.data_type()) {
                arrow_kind if arrow_kind.starts_with("Timestamp") => "timestamp",
                arrow_kind if arrow_kind == "Int64" => "bigint",
                arrow_kind if arrow_kind.starts_with("FixedSizeBinary") => "binary",
                arrow_kind if arrow_kind == "Utf8" => "string",
                other => panic!(
                    "no Athena type for the Parquet column {}: {other}",
                    f.name()
                ),
            };
            (f.name().clone(), kind.to_string())
        })
        .collect();
    assert_eq!(columns, expected);
}

/// Allowed statements of every role and role policy, by the role they belong to.
fn allow_statements(template: &Value) -> HashMap<String, Vec<Value>> {
    let mut by_role: HashMap<String, Vec<Value>> = HashMap::new();
    for (id, role) in of_type(template, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                by_role
                    .entry(id.clone())
                    .or_default()
                    .push(statement.clone());
            }
        }
    }
    for (_, policy) in of_type(template, "AWS::IAM::RolePolicy") {
        let role = policy["Properties"]["RoleName"]["Ref"].as_str().unwrap();
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap()
        {
            by_role
                .entry(role.to_string())
                .or_default()
                .push(statement.clone());
        }
    }
    for statements in by_role.values_mut() {
        statements.retain(|s| s["Effect"] == "Allow");
    }
    by_role
}

fn actions(statement: &Value) -> Vec<String> {
    one_or_many(&statement["Action"])
        .into_iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn no_role_allows_a_wildcard_action_or_a_wildcard_data_resource() {
    let template = template();
    let by_role = allow_statements(&template);
    assert!(!by_role.is_empty());
    for (role, statements) in &by_role {
        let managed = &resource(&template, role)["Properties"]["ManagedPolicyArns"];
        assert!(
            managed.is_null(),
            "{role} attaches managed policies: {managed}"
        );
        for statement in statements {
            for action in actions(statement) {
                assert!(!action.contains('*'), "{role} allows {action}");
            }
            for target in one_or_many(&statement["Resource"]) {
                if target == "*" || target.as_str().is_some_and(|t| t.ends_with(":*")) {
                    // Only Lambda's VPC network interfaces, which IAM cannot scope.
                    assert!(
                        actions(statement).iter().all(|a| a.starts_with("ec2:")),
                        "{role} allows {:?} on {target}",
                        actions(statement)
                    );
                }
            }
            assert!(statement["NotAction"].is_null() && statement["NotResource"].is_null());
        }
    }
    // SAM adds broad managed policies when a function has Policies or no Role.
    for (id, _) in FUNCTIONS {
        let function = props(&template, id);
        assert!(function["Policies"].is_null(), "{id} has SAM policies");
        let role = function["Role"]["Fn::GetAtt"][0].as_str().unwrap();
        assert_eq!(resource(&template, role)["Type"], "AWS::IAM::Role");
    }
    let roles: BTreeSet<&str> = FUNCTIONS
        .iter()
        .map(|(id, _)| {
            props(&template, id)["Role"]["Fn::GetAtt"][0]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        roles.len(),
        FUNCTIONS.len(),
        "each function has its own role"
    );
}

/// The actions of a role's statements on one resource (besides logs and VPC interfaces).
fn grants(template: &Value, role: &str) -> Vec<(Vec<String>, Value)> {
    allow_statements(template)[role]
        .iter()
        .filter(|s| {
            !actions(s)
                .iter()
                .all(|a| a.starts_with("logs:") || a.starts_with("ec2:"))
        })
        .map(|s| (actions(s), s["Resource"].clone()))
        .collect()
}

#[test]
fn ingest_may_only_put_records_on_its_stream_and_read_iam_grants() {
    let template = template();
    assert_eq!(
        grants(&template, "IngestRole"),
        [
            (
                vec!["kinesis:PutRecord".to_string(), "kinesis:PutRecords".into()],
                arn_of("EventStream")
            ),
            (
                vec!["s3:GetObject".to_string()],
                json!({"Fn::Sub": "${PrincipalsBucket.Arn}/principals/*"})
            )
        ]
    );
}

#[test]
fn the_writer_may_only_read_its_stream_report_failures_and_read_its_own_login() {
    let template = template();
    let grants = grants(&template, "WriterRole");
    for (actions, target) in &grants {
        for action in actions {
            match action.split_once(':').unwrap().0 {
                "kinesis" => {
                    assert!(
                        ["Describe", "Get", "List"]
                            .iter()
                            .any(|p| action["kinesis:".len()..].starts_with(p)),
                        "the writer must not {action}"
                    );
                    assert_eq!(target, &arn_of("EventStream"));
                }
                "sqs" => {
                    assert_eq!(action, "sqs:SendMessage");
                    assert_eq!(target, &arn_of("WriterFailureQueue"));
                }
                "secretsmanager" => {
                    assert_eq!(action, "secretsmanager:GetSecretValue");
                    assert_eq!(target, &reference("WriterDatabaseSecret"));
                }
                other => panic!("the writer must not use {other}: {action}"),
            }
        }
    }
    let all: Vec<&String> = grants.iter().flat_map(|(a, _)| a).collect();
    for needed in [
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:DescribeStream",
        "kinesis:ListShards",
        "sqs:SendMessage",
    ] {
        assert!(
            all.iter().any(|a| *a == needed),
            "the writer needs {needed}"
        );
    }
}

#[test]
fn query_reads_only_its_own_login_and_grants_and_puts_access_events_and_the_archiver_only_its_prefix_and_login(
) {
    let template = template();
    assert_eq!(
        grants(&template, "QueryRole"),
        [
            (
                vec!["kinesis:PutRecord".to_string(), "kinesis:PutRecords".into()],
                arn_of("EventStream")
            ),
            (
                vec!["s3:GetObject".to_string()],
                json!({"Fn::Sub": "${PrincipalsBucket.Arn}/principals/*"})
            ),
            (
                vec!["secretsmanager:GetSecretValue".to_string()],
                reference("ReaderDatabaseSecret")
            )
        ]
    );
    let parts = json!({"Fn::Sub": "${ArchiveBucket.Arn}/audit_events/*"});
    let notes = json!({"Fn::Sub": "${ArchiveBucket.Arn}/manifests/*"});
    let tiles = json!({"Fn::Sub": "${ArchiveBucket.Arn}/log/*"});
    let mut note_actions = BTreeSet::new();
    let mut tile_actions = BTreeSet::new();
    for (actions, target) in grants(&template, "ArchiverRole") {
        let target_text = target.to_string();
        if actions.iter().any(|a| a.starts_with("s3:")) {
            assert!(
                target_text.contains("ArchiveBucket"),
                "{actions:?} on {target}"
            );
            let object_level = actions
                .iter()
                .any(|a| a.ends_with("Object") || a.contains("Multipart"));
            if target_text.contains("/") && object_level {
                assert!(
                    target == parts || target == notes || target == tiles,
                    "{actions:?} on {target}"
                );
                if target == notes {
                    note_actions.extend(actions.clone());
                }
                if target == tiles {
                    tile_actions.extend(actions.clone());
                }
            }
        } else if actions.iter().any(|a| a.starts_with("kms:")) {
            // Checked with the archive key (the_archive_key_is_…).
            assert_eq!(target, arn_of("ArchiveSigningKey"));
        } else {
            assert_eq!(actions, ["secretsmanager:GetSecretValue"]);
            assert_eq!(target, reference("ArchiverDatabaseSecret"));
        }
    }
    // The manifests' notes are put and read back (a note lost between PostgreSQL and S3 is
    // put back), never deleted.
    assert_eq!(
        note_actions,
        BTreeSet::from(["s3:GetObject".to_string(), "s3:PutObject".into()])
    );
    // The log's tiles are only put: never read back, never deleted.
    assert_eq!(tile_actions, BTreeSet::from(["s3:PutObject".to_string()]));
    // Listing, which also makes S3 answer a missing note 404 rather than 403, is limited
    // to the three prefixes.
    let listing: Vec<Value> = allow_statements(&template)["ArchiverRole"]
        .iter()
        .filter(|s| actions(s) == ["s3:ListBucket"])
        .cloned()
        .collect();
    assert_eq!(listing.len(), 1, "{listing:?}");
    assert_eq!(listing[0]["Resource"], arn_of("ArchiveBucket"));
    assert_eq!(
        listing[0]["Condition"],
        json!({"StringLike": {"s3:prefix": ["audit_events/*", "manifests/*", "log/*"]}})
    );
}

#[test]
fn no_secret_is_in_the_template_and_each_function_reads_its_own_login() {
    let template = template();
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    for forbidden in ["DATABASE_URL", "password:", "Password:", "postgres://"] {
        assert!(!text.contains(forbidden), "template.yaml holds {forbidden}");
    }
    for (function, secret) in DATABASE_LOGINS
        .into_iter()
        .chain([("MigrateFunction", "DatabaseAdminSecretArn")])
    {
        let env = &props(&template, function)["Environment"]["Variables"];
        assert_eq!(env["DATABASE_SECRET_ARN"], reference(secret), "{function}");
        assert_eq!(env["DATABASE_HOST"], reference("DatabaseHost"));
        assert_eq!(env["DATABASE_NAME"], reference("DatabaseName"));
        assert_eq!(env["DATABASE_SSLMODE"], reference("DatabaseSslMode"));
        let vpc = &props(&template, function)["VpcConfig"];
        assert_eq!(vpc["SubnetIds"], reference("VpcSubnetIds"));
        assert_eq!(vpc["SecurityGroupIds"], reference("VpcSecurityGroupIds"));
    }
    let ingest = props(&template, "IngestFunction")["Environment"]["Variables"]
        .as_object()
        .unwrap();
    assert!(
        ingest.keys().all(|k| !k.starts_with("DATABASE_")),
        "ingest never reaches the database: {ingest:?}"
    );
    assert_eq!(ingest["STREAM_NAME"], reference("EventStream"));
}

#[test]
fn ingest_and_query_check_every_caller_themselves_with_the_apis_auth_mode() {
    let template = template();
    for function in ["IngestFunction", "QueryFunction"] {
        let env = &props(&template, function)["Environment"]["Variables"];
        assert_eq!(env["AUTH_MODE"], reference("AuthMode"), "{function}");
        assert_eq!(env["JWT_ISSUER"], reference("JwtIssuer"), "{function}");
        assert_eq!(
            env["JWT_AUDIENCE"],
            json!({"Fn::Join": [",", {"Ref": "JwtAudience"}]}),
            "{function}"
        );
        assert_eq!(env["JWT_TENANT_CLAIM"], reference("JwtTenantClaim"));
        assert_eq!(env["PRINCIPALS_BUCKET"], reference("PrincipalsBucket"));
        // Access events go through the write path's stream.
        assert_eq!(env["STREAM_NAME"], reference("EventStream"), "{function}");
    }
    let principals = props(&template, "PrincipalsBucket");
    assert_eq!(
        principals["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    assert_eq!(principals["VersioningConfiguration"]["Status"], "Enabled");
    for (_, id) in DATABASE_LOGINS {
        let generate = &props(&template, id)["GenerateSecretString"];
        assert_eq!(generate["GenerateStringKey"], "password");
        assert!(generate["PasswordLength"].as_u64() >= Some(32));
    }
}

#[test]
fn migrations_run_on_deploy_and_give_each_function_a_login_in_its_group_role() {
    let template = template();
    let migrations = resource(&template, "DatabaseMigrations");
    assert!(migrations["Type"].as_str().unwrap().starts_with("Custom::"));
    let properties = &migrations["Properties"];
    assert_eq!(
        properties["ServiceToken"],
        json!({"Ref": "MigrateFunction.Alias"})
    );
    // A new migrator build (new migrations) is a new version, which reruns the resource.
    assert_eq!(
        properties["CodeVersion"],
        json!({"Ref": "MigrateFunction.Version"})
    );
    assert!(props(&template, "MigrateFunction")["AutoPublishAlias"].is_string());
    let logins: Vec<(String, Value)> = properties["LoginRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["Role"].as_str().unwrap().to_string(),
                l["SecretArn"].clone(),
            )
        })
        .collect();
    let roles: Vec<&str> = logins.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, migrate::GROUP_ROLES);
    assert_eq!(
        logins.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        DATABASE_LOGINS
            .iter()
            .map(|(_, secret)| reference(secret))
            .collect::<Vec<_>>()
    );
    // The migrator may read every login's secret, to set its password.
    let by_role = allow_statements(&template);
    let readable: Vec<&Value> = by_role["MigrateRole"]
        .iter()
        .filter(|s| actions(s) == ["secretsmanager:GetSecretValue"])
        .flat_map(|s| one_or_many(&s["Resource"]))
        .collect();
    for (_, secret) in DATABASE_LOGINS {
        assert!(readable.contains(&&reference(secret)), "{secret}");
    }
    // The database-facing functions start after the schema and their logins exist.
    for (id, _) in DATABASE_LOGINS {
        let depends_on = one_or_many(&resource(&template, id)["DependsOn"])
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        assert!(depends_on.contains(&json!("DatabaseMigrations")), "{id}");
    }
}

fn alarms(template: &Value) -> Vec<&Value> {
    of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, a)| &a["Properties"])
        .collect()
}

fn alarm_on<'a>(template: &'a Value, metric: &str, dimension: &Value) -> Vec<&'a Value> {
    alarms(template)
        .into_iter()
        .filter(|a| {
            a["MetricName"] == metric
                && a["Dimensions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| &d["Value"] == dimension)
        })
        .collect()
}

#[test]
fn alarms_watch_lag_failures_errors_and_throttles_and_notify_the_topic() {
    let template = template();
    assert_eq!(
        alarm_on(&template, "IteratorAge", &reference("WriterFunction")).len(),
        1
    );
    assert_eq!(
        alarm_on(
            &template,
            "ApproximateNumberOfMessagesVisible",
            &json!({"Fn::GetAtt": ["WriterFailureQueue", "QueueName"]})
        )
        .len(),
        1
    );
    for (id, _) in &FUNCTIONS[..FUNCTIONS.len() - 1] {
        assert!(
            !alarm_on(&template, "Errors", &reference(id)).is_empty(),
            "no error alarm on {id}"
        );
        assert!(
            !alarm_on(&template, "Throttles", &reference(id)).is_empty(),
            "no throttle alarm on {id}"
        );
    }
    // The functions' own metrics (EMF): ingest-to-stored p99 and anything quarantined.
    let namespace = json!({"Fn::Sub": "Sentinel/${AWS::StackName}"});
    let p99 = props(&template, "IngestToStoredAlarm");
    assert_eq!(
        (
            &p99["Namespace"],
            &p99["MetricName"],
            &p99["ExtendedStatistic"]
        ),
        (&namespace, &json!("IngestToStored"), &json!("p99"))
    );
    assert_eq!(p99["Threshold"], reference("IngestToStoredP99AlarmMs"));
    let quarantine = props(&template, "WriterQuarantineAlarm");
    assert_eq!(
        (
            &quarantine["MetricName"],
            &quarantine["Statistic"],
            &quarantine["Threshold"]
        ),
        (&json!("Quarantined"), &json!("Sum"), &json!(0))
    );
    for alarm in [p99, quarantine] {
        assert_eq!(
            alarm["Dimensions"],
            json!([{"Name": "Function", "Value": "writer"}])
        );
    }
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"], namespace,
        "the functions put their metrics where the alarms look"
    );
    let dashboard = props(&template, "Dashboard");
    let body = dashboard["DashboardBody"]["Fn::Sub"][0].as_str().unwrap();
    let parsed: Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    assert_eq!(parsed["widgets"].as_array().unwrap().len(), 5);
    for metric in [
        "IngestToStored",
        "EventsStored",
        "Quarantined",
        "IteratorAge",
        "Latency",
        "RowsArchived",
    ] {
        assert!(body.contains(&format!("\"{metric}\"")), "{metric}");
    }
    let archiver_failure = props(&template, "ArchiverFailureAlarm");
    assert_eq!(archiver_failure["MetricName"], "Errors");
    assert_eq!(
        archiver_failure["Dimensions"][0]["Value"],
        reference("ArchiverFunction")
    );
    for alarm in alarms(&template) {
        assert_eq!(alarm["AlarmActions"], json!([{"Ref": "AlarmTopic"}]));
        assert_eq!(alarm["TreatMissingData"], "notBreaching");
    }
}

#[test]
fn the_outputs_name_the_api_stream_bucket_and_athena_table() {
    let template = template();
    let outputs = template["Outputs"].as_object().unwrap();
    assert_eq!(
        outputs["ApiUrl"]["Value"],
        json!({"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"})
    );
    assert_eq!(outputs["StreamName"]["Value"], reference("EventStream"));
    assert_eq!(
        outputs["ArchiveBucketName"]["Value"],
        reference("ArchiveBucket")
    );
    assert_eq!(
        outputs["AthenaTable"]["Value"],
        json!({"Fn::Sub": "${ArchiveDatabase}.audit_events"})
    );
    assert_eq!(
        outputs["WriterFailureQueueUrl"]["Value"],
        reference("WriterFailureQueue")
    );
    assert_eq!(
        outputs["CheckpointSigningKeyArn"]["Value"],
        arn_of("CheckpointSigningKey")
    );
    assert_eq!(
        outputs["CheckpointSigningKeyAlias"]["Value"],
        reference("CheckpointSigningKeyAlias")
    );
    assert_eq!(
        outputs["CheckpointBucketName"]["Value"],
        reference("CheckpointBucket")
    );
    assert_eq!(
        outputs["ArchiveSigningKeyArn"]["Value"],
        arn_of("ArchiveSigningKey")
    );
    assert_eq!(
        outputs["ArchiveSigningKeyAlias"]["Value"],
        reference("ArchiveSigningKeyAlias")
    );
    for (_, secret) in DATABASE_LOGINS {
        assert_eq!(
            outputs[&format!("{secret}Arn")]["Value"],
            reference(secret),
            "{secret}"
        );
    }
    for name in [
        "CheckpointSigningKeyArn",
        "CheckpointSigningKeyAlias",
        "CheckpointBucketName",
        "ArchiveSigningKeyArn",
        "ArchiveSigningKeyAlias",
    ] {
        assert!(
            outputs[name]["Condition"].is_null(),
            "{name} is infrastructure"
        );
    }
}

/// With DeployFunctions=false nothing left in the stack may refer to what it leaves out, or
/// the infrastructure-only deploy (LocalStack's) would fail.
#[test]
fn the_infrastructure_stands_without_the_functions() {
    let template = template();
    let conditions = template["Conditions"].as_object().unwrap();
    let needs_functions = |condition: &str| {
        condition == "Functions"
            || conditions[condition]
                .to_string()
                .contains(r#"{"Condition":"Functions"}"#)
    };
    let mut left_out = BTreeSet::new();
    for (id, r) in resources(&template) {
        let kind = r["Type"].as_str().unwrap();
        let is_compute = kind.starts_with("AWS::Serverless::")
            || kind.starts_with("AWS::ApiGatewayV2::")
            || kind.starts_with("AWS::Lambda::")
            || kind.starts_with("AWS::IAM::")
            || kind.starts_with("Custom::");
        match r["Condition"].as_str() {
            Some(c) if needs_functions(c) => {
                left_out.insert(id.clone());
            }
            _ => assert!(
                !is_compute,
                "{id} ({kind}) must be left out by DeployFunctions"
            ),
        }
    }
    for (id, r) in resources(&template) {
        if left_out.contains(id) {
            continue;
        }
        // What an Fn::If on a condition that needs the functions picks is not resolved
        // without them (the signing keys' policies name the checkpointer's and the
        // archiver's roles so).
        for target in references_unless(r, &needs_functions) {
            assert!(
                !left_out.contains(&target),
                "{id} refers to {target}, which DeployFunctions=false leaves out"
            );
        }
    }
    for (name, output) in template["Outputs"].as_object().unwrap() {
        if output["Condition"].as_str().is_some_and(needs_functions) {
            continue;
        }
        for target in references(&output["Value"]) {
            assert!(
                !left_out.contains(&target),
                "output {name} refers to {target}"
            );
        }
    }
    assert!(left_out.contains("HttpApi") && left_out.contains("WriterFunction"));
    for infrastructure in [
        "EventStream",
        "ArchiveBucket",
        "WriterFailureQueue",
        "CheckpointSigningKey",
        "CheckpointSigningKeyAlias",
        "CheckpointBucket",
        "ArchiveSigningKey",
        "ArchiveSigningKeyAlias",
    ] {
        assert!(!left_out.contains(infrastructure), "{infrastructure}");
    }
}

#[test]
fn every_parameter_and_output_is_documented_in_the_deploy_guide() {
    let template = template();
    let guide = std::fs::read_to_string(root().join("docs/deploy.md")).expect("docs/deploy.md");
    for section in ["Parameters", "Outputs"] {
        for name in template[section].as_object().unwrap().keys() {
            assert!(
                guide.contains(&format!("`{name}`")),
                "docs/deploy.md does not describe the {section} entry {name}"
            );
        }
    }
}

/// The key policy's statements, each with whether it stands only when the functions are
/// deployed (an `Fn::If` on `Functions` whose other branch is `AWS::NoValue`).
fn key_policy_statements<'a>(template: &'a Value, key: &str) -> Vec<(bool, &'a Value)> {
    let policy = &props(template, key)["KeyPolicy"];
    assert_eq!(policy["Version"], "2012-10-17");
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|statement| match statement.get("Fn::If") {
            Some(branches) => {
                assert_eq!(branches[0], "Functions", "{statement}");
                assert_eq!(branches[2], reference("AWS::NoValue"), "{statement}");
                (true, &branches[1])
            }
            None => (false, statement),
        })
        .collect()
}

/// `key` (with its alias `alias`, named `alias/<stack><suffix>`) is a retained P-256
/// signing key, administered by the account, whose public key the account may read, and
/// with which only `signer`'s role may sign; no other role may use it at all.
fn assert_a_signing_key_only_one_role_signs_with(
    template: &Value,
    key: &str,
    alias: &str,
    suffix: &str,
    signer: &str,
) {
    let resource_of_key = resource(template, key);
    assert_eq!(resource_of_key["Type"], "AWS::KMS::Key");
    // What it signed must stay verifiable: no stack delete or replacement deletes it.
    assert_eq!(resource_of_key["DeletionPolicy"], "Retain", "{key}");
    assert_eq!(resource_of_key["UpdateReplacePolicy"], "Retain", "{key}");
    assert!(
        resource_of_key["Condition"].is_null(),
        "{key} is infrastructure"
    );
    let properties = &resource_of_key["Properties"];
    assert_eq!(properties["KeySpec"], "ECC_NIST_P256", "{key}");
    assert_eq!(properties["KeyUsage"], "SIGN_VERIFY", "{key}");
    assert_eq!(properties["PendingWindowInDays"], 30, "{key}");
    let alias_properties = props(template, alias);
    assert_eq!(alias_properties["TargetKeyId"], reference(key));
    assert_eq!(
        alias_properties["AliasName"]["Fn::Sub"],
        format!("alias/${{AWS::StackName}}{suffix}")
    );

    let account = json!({"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}});
    let statements = key_policy_statements(template, key);
    let mut signers = Vec::new();
    let mut account_actions = BTreeSet::new();
    for (needs_functions, statement) in &statements {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert!(statement["NotAction"].is_null() && statement["NotPrincipal"].is_null());
        // Every statement is the account's, so that IAM policies decide, and none names a
        // role as principal (KMS refuses a role IAM has not propagated yet).
        assert_eq!(statement["Principal"], account, "{statement}");
        let actions = actions(statement);
        for action in &actions {
            assert!(!action.contains('*'), "{key}'s policy allows {action}");
            // A grant could hand kms:Sign to anyone.
            assert_ne!(action, "kms:CreateGrant");
        }
        if actions.iter().any(|a| a == "kms:Sign") {
            signers.push((*needs_functions, statement));
        } else {
            account_actions.extend(actions);
        }
    }
    // Only the signer's role signs, and only ECDSA over the raw message.
    assert_eq!(signers.len(), 1, "{key}: {signers:?}");
    let (needs_functions, sign) = signers[0];
    assert!(needs_functions);
    assert_eq!(actions(sign), ["kms:Sign"]);
    assert_eq!(
        sign["Condition"],
        json!({
            "ArnEquals": {"aws:PrincipalArn": arn_of(signer)},
            "StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "RAW"}
        }),
        "{key}"
    );
    // The account administers the key (and so passes KMS's lockout check) and, through
    // IAM, anyone it allows reads the public key; no one else may sign with it.
    for needed in [
        "kms:PutKeyPolicy",
        "kms:GetKeyPolicy",
        "kms:DescribeKey",
        "kms:GetPublicKey",
        "kms:EnableKey",
        "kms:DisableKey",
        "kms:TagResource",
    ] {
        assert!(
            account_actions.contains(needed),
            "the account needs {needed} on {key}"
        );
    }
    assert!(!account_actions.contains("kms:Sign"));

    // No role but the signer's may use the key, and it only to sign and read the key.
    for (role, statements) in allow_statements(template) {
        for statement in statements {
            let on_key = references(&statement["Resource"]).contains(&key.to_string());
            let kms: Vec<String> = actions(&statement)
                .into_iter()
                .filter(|a| a.starts_with("kms:"))
                .collect();
            if role == signer {
                if on_key {
                    assert_eq!(kms, ["kms:Sign", "kms:GetPublicKey"]);
                }
            } else {
                assert!(!on_key, "{role} may use {key}");
                // Another role signs only with a key it names (its own), never any key.
                if kms.contains(&"kms:Sign".to_string()) {
                    assert!(
                        !references(&statement["Resource"]).is_empty(),
                        "{role} may sign with {}",
                        statement["Resource"]
                    );
                }
            }
        }
    }
}

#[test]
fn the_checkpoint_key_is_a_retained_p256_signing_key_only_the_checkpointer_may_sign_with() {
    assert_a_signing_key_only_one_role_signs_with(
        &template(),
        "CheckpointSigningKey",
        "CheckpointSigningKeyAlias",
        "-checkpoints",
        "CheckpointerRole",
    );
}

#[test]
fn the_archive_key_is_a_retained_p256_signing_key_only_the_archiver_may_sign_with() {
    assert_a_signing_key_only_one_role_signs_with(
        &template(),
        "ArchiveSigningKey",
        "ArchiveSigningKeyAlias",
        "-archive",
        "ArchiverRole",
    );
}

/// Each key has its own signer: a compromised checkpointer cannot sign a manifest, nor the
/// archiver a checkpoint.
#[test]
fn the_checkpointer_cannot_sign_with_the_archive_key_nor_the_archiver_with_the_checkpoint_key() {
    let template = template();
    for (role, other_key, own_key) in [
        (
            "CheckpointerRole",
            "ArchiveSigningKey",
            "CheckpointSigningKey",
        ),
        ("ArchiverRole", "CheckpointSigningKey", "ArchiveSigningKey"),
    ] {
        // Its IAM policies sign with its own key only...
        let signs_on: BTreeSet<String> = allow_statements(&template)[role]
            .iter()
            .filter(|s| actions(s).iter().any(|a| a == "kms:Sign"))
            .flat_map(|s| references(&s["Resource"]))
            .collect();
        assert_eq!(signs_on, BTreeSet::from([own_key.to_string()]), "{role}");
        // ...and the other key's policy lets another role sign, never this one.
        for (_, statement) in key_policy_statements(&template, other_key) {
            if actions(statement).iter().any(|a| a == "kms:Sign") {
                assert_ne!(
                    statement["Condition"]["ArnEquals"]["aws:PrincipalArn"],
                    arn_of(role),
                    "{role} may sign with {other_key}"
                );
                assert!(
                    !references(&statement["Condition"]).contains(&role.to_string()),
                    "{other_key}'s policy names {role}"
                );
            }
        }
    }
}

#[test]
fn the_checkpoint_bucket_locks_every_checkpoint_in_compliance_mode_and_is_retained() {
    let template = template();
    let bucket = resource(&template, "CheckpointBucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    assert_eq!(bucket["UpdateReplacePolicy"], "Retain");
    assert!(
        bucket["Condition"].is_null(),
        "the bucket is infrastructure"
    );
    let properties = &bucket["Properties"];
    assert_eq!(properties["ObjectLockEnabled"], true);
    let lock = &properties["ObjectLockConfiguration"];
    assert_eq!(lock["ObjectLockEnabled"], "Enabled");
    // Compliance, not governance: no principal, not even root, can delete a checkpoint or
    // shorten its retention before it ends.
    let retention = &lock["Rule"]["DefaultRetention"];
    assert_eq!(retention["Mode"], "COMPLIANCE");
    assert_eq!(retention["Days"], reference("CheckpointRetentionDays"));
    assert!(retention["Years"].is_null());
    let days = &template["Parameters"]["CheckpointRetentionDays"];
    assert_eq!(days["Type"], "Number");
    assert!(days["Default"].as_u64() >= Some(365), "{days}");
    assert!(days["MinValue"].as_u64() >= Some(1), "{days}");
    // Object Lock needs versioning; a lock is on a version.
    assert_eq!(properties["VersioningConfiguration"]["Status"], "Enabled");
    let block = &properties["PublicAccessBlockConfiguration"];
    for key in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[key], true, "{key}");
    }
    let encryption = &properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    // No lifecycle rule expires or deletes checkpoints.
    for rule in properties["LifecycleConfiguration"]["Rules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for key in [
            "ExpirationInDays",
            "ExpirationDate",
            "NoncurrentVersionExpiration",
            "NoncurrentVersionExpirationInDays",
            "Transitions",
        ] {
            assert!(rule[key].is_null(), "checkpoint lifecycle rule sets {key}");
        }
    }
    assert_tls_only(&template, "CheckpointBucketPolicy", "CheckpointBucket");
}

#[test]
fn the_checkpointer_runs_every_minute_one_run_at_a_time_as_its_own_login() {
    let template = template();
    let function = resource(&template, "CheckpointerFunction");
    let checkpointer = &function["Properties"];
    let schedules: Vec<&Value> = checkpointer["Events"]
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["Type"] == "Schedule" || e["Type"] == "ScheduleV2")
        .collect();
    assert_eq!(checkpointer["Events"].as_object().unwrap().len(), 1);
    assert_eq!(schedules.len(), 1);
    // A checkpoint at most 60 s after new events are stored (issue 11).
    assert_eq!(schedules[0]["Properties"]["Schedule"], "rate(1 minute)");
    // Two runs never overlap; a late or failed run is not retried, the next one is due.
    assert_eq!(checkpointer["ReservedConcurrentExecutions"], 1);
    let invoke = &checkpointer["EventInvokeConfig"];
    assert_eq!(invoke["MaximumRetryAttempts"], 0);
    assert_eq!(invoke["MaximumEventAgeInSeconds"], 60);
    let timeout = checkpointer["Timeout"].as_u64().unwrap();
    assert!((60..=900).contains(&timeout), "Timeout {timeout}");

    let env = &checkpointer["Environment"]["Variables"];
    assert_eq!(env["CHECKPOINT_BUCKET"], reference("CheckpointBucket"));
    assert_eq!(env["SIGNING_KEY_ID"], arn_of("CheckpointSigningKey"));
    assert_eq!(env["STACK_NAME"], reference("AWS::StackName"));
    assert_eq!(
        env["HEARTBEAT_SECONDS"],
        reference("CheckpointHeartbeatSeconds")
    );
    // The range checkpointer::heartbeat accepts: at least the schedule, under an hour.
    let heartbeat = &template["Parameters"]["CheckpointHeartbeatSeconds"];
    assert_eq!(heartbeat["MinValue"], 60);
    assert_eq!(heartbeat["MaxValue"], 3540);
    assert_eq!(heartbeat["Default"], 3000);

    // It starts once its login exists and it may use the key.
    let depends_on = one_or_many(&function["DependsOn"]);
    assert!(depends_on.contains(&&json!("CheckpointerSigningPolicy")));

    // Write checkpoints (never read, overwrite or delete them), read its login, sign.
    assert_eq!(
        grants(&template, "CheckpointerRole"),
        [
            (
                vec!["s3:PutObject".to_string()],
                json!({"Fn::Sub": "${CheckpointBucket.Arn}/checkpoints/*"})
            ),
            (
                vec!["secretsmanager:GetSecretValue".to_string()],
                reference("CheckpointerDatabaseSecret")
            ),
            (
                vec!["kms:Sign".to_string(), "kms:GetPublicKey".into()],
                arn_of("CheckpointSigningKey")
            )
        ]
    );
    let policy = props(&template, "CheckpointerSigningPolicy");
    assert_eq!(policy["RoleName"], reference("CheckpointerRole"));
    // Nothing else may write to or delete from the checkpoint bucket.
    for (role, statements) in allow_statements(&template) {
        if role == "CheckpointerRole" {
            continue;
        }
        for statement in statements {
            assert!(
                !references(&statement["Resource"]).contains(&"CheckpointBucket".to_string()),
                "{role} may use the checkpoint bucket"
            );
        }
    }
}
