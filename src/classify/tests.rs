use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use proptest::prelude::*;

use super::rules::parse_rules;
use super::*;

/// The kernel's comm limit (TASK_COMM_LEN minus the NUL).
const COMM_MAX: usize = 15;

fn builtin_file() -> ParsedFile {
    parse_rules(&RuleOrigin::Builtin, BUILTIN_RULES).unwrap_or_else(|e| panic!("{e}"))
}

fn builtin_rules() -> Vec<rules::ParsedRule> {
    builtin_file().rules
}

/// User files (name, text), highest precedence first, then the built-ins.
fn with_user_files(files: &[(&str, &str)]) -> Classifier {
    let mut parsed = Vec::new();
    for (name, text) in files {
        let origin = RuleOrigin::File(PathBuf::from(name));
        let rules = parse_rules(&origin, text).unwrap_or_else(|e| panic!("{e}"));
        parsed.push((origin, rules));
    }
    parsed.push((RuleOrigin::Builtin, builtin_file()));
    Classifier::from_files(parsed)
}

fn labels(c: &Classifier, comm: &str, exe: &str, cmdline: &str) -> (String, String) {
    let got = c.classify(comm, exe, cmdline);
    (got.group.to_string(), got.subgroup.to_string())
}

fn is(group: &str, subgroup: &str) -> (String, String) {
    (group.to_string(), subgroup.to_string())
}

fn jvm(main_class_and_args: &str) -> String {
    format!(
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms1g -Xmx1g -XX:+UseG1GC \
         -Djava.awt.headless=true -cp /opt/app/libs/zookeeper-3.8.4.jar:/opt/app/libs/kafka-clients-3.7.0.jar:\
         /opt/app/libs/log4j-1.2.17.jar {main_class_and_args}"
    )
}

// ------------------------------------------------------------ built-in data

#[test]
fn builtin_rules_cover_the_spec() {
    let rules = builtin_rules();
    let mut pairs = HashSet::new();
    for rule in &rules {
        assert!(
            pairs.insert((rule.group.clone(), rule.subgroup.clone())),
            "duplicate subgroup {}/{} (rule {}, line {})",
            rule.group,
            rule.subgroup,
            rule.number,
            rule.line
        );
    }
    assert!(
        pairs.len() >= 140,
        "only {} built-in subgroups",
        pairs.len()
    );

    let c = Classifier::builtin();
    let groups: Vec<String> = c.groups().iter().map(|g| g.to_string()).collect();
    for group in [
        "db",
        "web",
        "container",
        "monitoring",
        "backup",
        "messaging",
        "logging",
        "system",
    ] {
        assert!(groups.iter().any(|g| g == group), "group {group} missing");
    }
    // The subgroups the spec names explicitly.
    for (group, subgroup) in [
        ("db", "postgres"),
        ("db", "mysql"),
        ("db", "mongodb"),
        ("db", "oracle"),
        ("db", "cassandra"),
        ("db", "redis"),
        ("db", "clickhouse"),
        ("web", "nginx"),
        ("web", "apache"),
        ("web", "tomcat"),
        ("web", "caddy"),
        ("web", "weblogic"),
        ("web", "websphere"),
        ("container", "docker"),
        ("container", "containerd"),
        ("container", "kubelet"),
        ("container", "podman"),
        ("container", "crio"),
        ("monitoring", "prometheus"),
        ("monitoring", "grafana"),
        ("monitoring", "alertmanager"),
        ("monitoring", "zabbix"),
        ("backup", "veeam"),
        ("backup", "bacula"),
        ("backup", "netbackup"),
        ("backup", "commvault"),
        ("messaging", "kafka"),
        ("messaging", "rabbitmq"),
        ("messaging", "activemq"),
        ("messaging", "nats"),
        ("logging", "elasticsearch"),
        ("logging", "logstash"),
        ("logging", "splunk"),
        ("logging", "graylog"),
        ("system", "systemd"),
        ("system", "sshd"),
        ("system", "cron"),
        ("system", "postfix"),
    ] {
        assert!(
            pairs.contains(&(group.to_string(), subgroup.to_string())),
            "{group}/{subgroup} missing"
        );
    }
}

#[test]
fn builtin_names_are_unique() {
    // A name in two rules makes the later one dead weight at best and a
    // misclassification at worst.
    let rules = builtin_rules();
    let mut owner: HashMap<&str, (&str, &str)> = HashMap::new();
    for rule in &rules {
        for name in &rule.matches {
            if let Some((g, s)) = owner.insert(name, (&rule.group, &rule.subgroup)) {
                panic!(
                    "{name:?} is in both {g}/{s} and {}/{}",
                    rule.group, rule.subgroup
                );
            }
        }
    }
}

#[test]
fn builtin_long_names_also_match_as_truncated_comm() {
    let rules = builtin_rules();
    let names: HashSet<&str> = rules
        .iter()
        .flat_map(|r| r.matches.iter().map(String::as_str))
        .collect();
    for name in &names {
        if name.len() > COMM_MAX {
            let comm = &name[..COMM_MAX];
            assert!(
                names.contains(comm),
                "{name:?} can only match an exe; add its comm form {comm:?}"
            );
        }
    }
}

#[test]
fn builtin_regexes_all_have_prefilter_literals() {
    // A regex without a literal runs on every cmdline of every process.
    let c = Classifier::builtin();
    assert_eq!(c.matcher.unfiltered_cmdline_patterns(), Vec::<&str>::new());
}

#[test]
fn builtin_file_loads_through_the_public_path() {
    let c = Classifier::load(&RuleSources::builtin_only()).unwrap();
    assert_eq!(c.sources(), [RuleOrigin::Builtin]);
    assert_eq!(c.subgroups(), Classifier::builtin().subgroups());
}

// ------------------------------------------------------------ matching

#[test]
fn exact_comm() {
    let c = Classifier::builtin();
    let got = c.classify("postgres", "", "postgres: checkpointer");
    assert_eq!((&*got.group, &*got.subgroup), ("db", "postgres"));
    assert_eq!(got.rule.unwrap().matched_by(), MatchedBy::Comm);
    assert_eq!(labels(&c, "sshd", "sshd", ""), is("system", "sshd"));
    assert_eq!(
        labels(&c, "clickhouse-serv", "", ""),
        is("db", "clickhouse")
    );
    assert_eq!(
        labels(&c, "Runner.Listener", "", ""),
        is("ci", "github-runner")
    );
}

#[test]
fn exact_exe_basename() {
    let c = Classifier::builtin();
    let got = c.classify("worker-3", "clickhouse-server", "");
    assert_eq!((&*got.group, &*got.subgroup), ("db", "clickhouse"));
    assert_eq!(got.rule.unwrap().matched_by(), MatchedBy::Exe);
    // A kata shim's comm is the truncated "containerd-shim"; its exe tells.
    assert_eq!(
        labels(&c, "containerd-shim", "containerd-shim-kata-v2", ""),
        is("container", "kata")
    );
    assert_eq!(
        labels(&c, "containerd-shim", "containerd-shim-runc-v2", ""),
        is("container", "containerd")
    );
}

#[test]
fn names_are_case_sensitive_and_whole() {
    let c = Classifier::builtin();
    assert_eq!(labels(&c, "Postgres", "", ""), is("other", "unknown"));
    assert_eq!(labels(&c, "postgres2", "", ""), is("other", "unknown"));
    assert_eq!(labels(&c, "postgre", "", ""), is("other", "unknown"));
}

#[test]
fn java_main_class_picks_the_subgroup() {
    let c = Classifier::builtin();
    let cases = [
        (
            jvm("kafka.Kafka /opt/kafka/config/server.properties"),
            ("messaging", "kafka"),
        ),
        (
            jvm("-Des.path.home=/usr/share/elasticsearch -m org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch"),
            ("logging", "elasticsearch"),
        ),
        (
            jvm("org.elasticsearch.bootstrap.Elasticsearch -d"),
            ("logging", "elasticsearch"),
        ),
        (
            jvm("-Dcatalina.base=/var/lib/tomcat9 org.apache.catalina.startup.Bootstrap start"),
            ("web", "tomcat"),
        ),
        (
            jvm("org.apache.cassandra.service.CassandraDaemon"),
            ("db", "cassandra"),
        ),
        (
            jvm("org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg"),
            ("orchestration", "zookeeper"),
        ),
        (jvm("org.logstash.Logstash -f /etc/logstash/conf.d"), ("logging", "logstash")),
        (
            "java -Djava.awt.headless=true -jar /usr/share/java/jenkins.war --webroot=/var/cache/jenkins".to_string(),
            ("ci", "jenkins"),
        ),
        (
            "java -jar agent.jar -url https://ci.example.com/ -secret abc -name builder-1".to_string(),
            ("ci", "jenkins-agent"),
        ),
        (
            jvm("org.apache.hadoop.hdfs.server.namenode.NameNode"),
            ("bigdata", "hdfs-namenode"),
        ),
        (
            jvm("-Dcatalina.home=/opt/atlassian/jira org.apache.catalina.startup.Bootstrap start"),
            ("apps", "jira"),
        ),
        (jvm("com.example.Main --port 8080"), ("runtime", "java")),
    ];
    for (cmdline, (group, subgroup)) in cases {
        assert_eq!(
            labels(&c, "java", "java", &cmdline),
            is(group, subgroup),
            "{cmdline}"
        );
    }
    // The classpath of every JVM above mentions kafka and zookeeper jars;
    // only a main class may decide.
    let got = c.classify("java", "java", &jvm("kafka.Kafka x"));
    assert_eq!(got.rule.unwrap().matched_by(), MatchedBy::Cmdline);
}

#[test]
fn other_cmdline_rules() {
    let c = Classifier::builtin();
    assert_eq!(
        labels(&c, "beam.smp", "beam.smp", "/usr/lib/erlang/erts-13.2/bin/beam.smp -W w -- -root /usr/lib/erlang -progname erl -- -home /var/lib/rabbitmq -- -noshell -s rabbit boot -boot start_sasl"),
        is("messaging", "rabbitmq")
    );
    assert_eq!(
        labels(
            &c,
            "beam.smp",
            "beam.smp",
            "/usr/lib/erlang/erts-13.2/bin/beam.smp -- -root /usr/lib/erlang"
        ),
        is("runtime", "erlang")
    );
    assert_eq!(
        labels(&c, "ora_pmon_orcl", "oracle", "ora_pmon_ORCL"),
        is("db", "oracle")
    );
    assert_eq!(labels(&c, "x", "", "ora_smon_ORCL"), is("db", "oracle"));
    assert_eq!(
        labels(
            &c,
            "python3",
            "python3.11",
            "/usr/bin/python3 -m vllm.entrypoints.openai.api_server --model m"
        ),
        is("ml", "vllm")
    );
    assert_eq!(
        labels(
            &c,
            "python3",
            "python3.11",
            "/usr/bin/python3 /srv/app/main.py"
        ),
        is("runtime", "python")
    );
    assert_eq!(
        labels(&c, "node", "node", "node /srv/app/server.js"),
        is("runtime", "node")
    );
    assert_eq!(
        labels(&c, "php-fpm8.2", "php-fpm8.2", "php-fpm: pool www"),
        is("runtime", "php-fpm")
    );
    assert_eq!(
        labels(
            &c,
            "postgres_export",
            "postgres_exporter",
            "/usr/bin/postgres_exporter --web.listen-address=:9187"
        ),
        is("monitoring", "exporters")
    );
    assert_eq!(
        labels(&c, "ruby", "ruby", "puma 6.4.2 (unix:///var/opt/gitlab/gitlab-rails/sockets/gitlab.socket) [gitlab-puma-worker]"),
        is("vcs", "gitlab")
    );
    assert_eq!(
        labels(&c, "ruby", "ruby", "puma 6.4.2 (tcp://0.0.0.0:3000) [app]"),
        is("web", "puma")
    );
}

#[test]
fn fallback_is_other_unknown() {
    let c = Classifier::builtin();
    let got = c.classify(
        "my-own-daemon",
        "my-own-daemon",
        "/opt/x/my-own-daemon --flag",
    );
    assert_eq!(
        (&*got.group, &*got.subgroup),
        (OTHER_GROUP, UNKNOWN_SUBGROUP)
    );
    assert_eq!(got.rule, None);
    assert_eq!(labels(&c, "", "", ""), is("other", "unknown"));
    // Interned once: the fallback labels are shared, not allocated per call.
    let again = c.classify("a", "b", "c");
    assert!(Arc::ptr_eq(&got.group, &again.group));
}

#[test]
fn raw_and_joined_cmdlines_agree() {
    let c = Classifier::builtin();
    let raw = "/usr/bin/java\0-cp\0x.jar\0kafka.Kafka\0server.properties\0";
    let joined = "/usr/bin/java -cp x.jar kafka.Kafka server.properties";
    assert_eq!(c.classify("java", "", raw), c.classify("java", "", joined));
    assert_eq!(labels(&c, "java", "", raw), is("messaging", "kafka"));
    assert_eq!(labels(&c, "sshd\n", "", ""), is("system", "sshd"));
}

#[test]
fn labels_are_interned() {
    let c = Classifier::builtin();
    let a = c.classify("postgres", "", "");
    let b = c.classify("pgbouncer", "", "");
    assert!(Arc::ptr_eq(&a.group, &b.group));
}

// ------------------------------------------------------------ precedence

#[test]
fn user_rule_overrides_builtin_with_the_same_name() {
    let c = with_user_files(&[(
        "user.toml",
        r#"subgroups = [{ group = "payments", subgroup = "db", matches = ["postgres"] }]"#,
    )]);
    assert_eq!(labels(&c, "postgres", "", ""), is("payments", "db"));
    let info = c
        .rule(c.classify("postgres", "", "").rule.unwrap())
        .unwrap();
    assert_eq!(info.origin, RuleOrigin::File(PathBuf::from("user.toml")));
    // Built-ins still apply to everything else.
    assert_eq!(labels(&c, "nginx", "", ""), is("web", "nginx"));
}

#[test]
fn user_cmdline_rule_beats_builtin_name_rule() {
    let c = with_user_files(&[(
        "user.toml",
        r#"subgroups = [{ group = "myapp", subgroup = "frontend", cmdline_matches = ['node .*myapp-frontend'] }]"#,
    )]);
    assert_eq!(
        labels(&c, "node", "node", "node /srv/myapp-frontend/index.js"),
        is("myapp", "frontend")
    );
    assert_eq!(
        labels(&c, "nginx", "nginx", "node /srv/myapp-frontend/index.js"),
        is("myapp", "frontend")
    );
}

#[test]
fn within_a_file_names_beat_cmdlines() {
    let c = with_user_files(&[(
        "user.toml",
        r#"subgroups = [
  { group = "a", subgroup = "by-cmdline", cmdline_matches = ['--role=api'] },
  { group = "a", subgroup = "by-name", matches = ["svc"] },
]"#,
    )]);
    assert_eq!(labels(&c, "svc", "", "svc --role=api"), is("a", "by-name"));
    assert_eq!(
        labels(&c, "other", "", "svc --role=api"),
        is("a", "by-cmdline")
    );
    // Same in the built-ins: the name "postgres" wins over any cmdline rule.
    let b = Classifier::builtin();
    assert_eq!(
        labels(&b, "postgres", "", &jvm("kafka.Kafka")),
        is("db", "postgres")
    );
}

#[test]
fn within_a_file_earlier_beats_later() {
    let c = with_user_files(&[(
        "user.toml",
        r#"subgroups = [
  { group = "a", subgroup = "first", matches = ["one"], cmdline_matches = ['--x'] },
  { group = "a", subgroup = "second", matches = ["two"], cmdline_matches = ['--x'] },
]"#,
    )]);
    assert_eq!(labels(&c, "-", "", "p --x"), is("a", "first"));
    // comm names the later rule, exe the earlier one: the earlier rule wins,
    // reported as an exe match.
    let got = c.classify("two", "one", "");
    assert_eq!(&*got.subgroup, "first");
    assert_eq!(got.rule.unwrap().matched_by(), MatchedBy::Exe);
}

#[test]
fn earlier_files_beat_later_files() {
    let c = with_user_files(&[
        (
            "explicit.toml",
            r#"subgroups = [{ group = "x", subgroup = "explicit", matches = ["svc"] }]"#,
        ),
        (
            "local.toml",
            r#"subgroups = [
  { group = "x", subgroup = "local", matches = ["svc"] },
  { group = "x", subgroup = "local-only", matches = ["aux"] },
]"#,
        ),
    ]);
    assert_eq!(labels(&c, "svc", "", ""), is("x", "explicit"));
    assert_eq!(labels(&c, "aux", "", ""), is("x", "local-only"));
    assert_eq!(c.sources().len(), 3);
}

#[test]
fn load_reads_the_explicit_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subgroups.toml");
    std::fs::write(
        &path,
        "[[subgroups]]\ngroup = \"myapp\"\nsubgroup = \"api\"\nmatches = [\"myapp-api\"]\n",
    )
    .unwrap();
    let sources = RuleSources {
        explicit: Some(path.clone()),
        search_default_locations: false,
    };
    let c = Classifier::load(&sources).unwrap();
    assert_eq!(labels(&c, "myapp-api", "", ""), is("myapp", "api"));
    assert_eq!(
        c.sources(),
        [RuleOrigin::File(path.clone()), RuleOrigin::Builtin]
    );

    std::fs::write(&path, "subgroups = [{ group = \"a\", subgroup = \"b\" }]\n").unwrap();
    let err = Classifier::load(&sources).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:14: rule has no pattern (`matches`, `cmdline_matches`, `unit_matches`, \
             `container_matches`, `cgroup_matches` or `user_matches`), so it can never match \
             (rule 1: a/b)",
            path.display()
        )
    );
}

// ------------------------------------------------------------ placement

const PLACED: &str = r#"subgroups = [
  { group = "db", subgroup = "custom-pg", matches = ["pg-custom"] },
  { group = "batch", subgroup = "backup", unit_matches = ['backup(@.*)?\.service'] },
  { group = "apps", subgroup = "docker", container_matches = ["docker://.*"] },
  { group = "apps", subgroup = "tenant", cgroup_matches = ["/tenants/[a-z]+(/.*)?"] },
  { group = "people", subgroup = "alice", user_matches = ["alice", "1000"] },
  { group = "u", subgroup = "cmd", cmdline_matches = ["--tenant"] },
]"#;

fn placed() -> Classifier {
    with_user_files(&[("placed.toml", PLACED)])
}

fn at<'a>(unit: &'a str, container: &'a str, cgroup: &'a str, user: &'a str) -> Placement<'a> {
    let some = |s: &'a str| (!s.is_empty()).then_some(s);
    Placement {
        unit: some(unit),
        container: some(container),
        cgroup: some(cgroup),
        user: some(user),
    }
}

fn placed_labels(c: &Classifier, comm: &str, cmdline: &str, p: &Placement) -> (String, String) {
    let got = c.classify_placed(comm, comm, cmdline, p);
    (got.group.to_string(), got.subgroup.to_string())
}

#[test]
fn placement_rules_match_whole_values() {
    let c = placed();
    assert!(c.uses_placement());
    assert!(!Classifier::builtin().uses_placement());
    let p = at("backup@daily.service", "", "/system.slice/x", "");
    assert_eq!(placed_labels(&c, "tar", "", &p), is("batch", "backup"));
    // Not the whole unit name.
    let p = at("backup.service.d", "", "", "");
    assert_eq!(placed_labels(&c, "tar", "", &p), is("other", "unknown"));
    let p = at("", "docker://4f1a", "", "");
    assert_eq!(placed_labels(&c, "zz-x", "", &p), is("apps", "docker"));
    let p = at("", "containerd://4f1a", "", "");
    assert_eq!(placed_labels(&c, "zz-x", "", &p), is("other", "unknown"));
    let p = at("", "", "/tenants/acme/web", "");
    assert_eq!(placed_labels(&c, "zz-x", "", &p), is("apps", "tenant"));
    let p = at("", "", "", "1000");
    assert_eq!(placed_labels(&c, "zz-x", "", &p), is("people", "alice"));
    let p = at("", "", "", "alicex");
    assert_eq!(placed_labels(&c, "zz-x", "", &p), is("other", "unknown"));
    // Unknown placement: those rules cannot match, the others still do.
    assert_eq!(labels(&c, "zz-x", "zz-x", ""), is("other", "unknown"));
    assert_eq!(labels(&c, "pg-custom", "", ""), is("db", "custom-pg"));
}

#[test]
fn placement_precedence() {
    let c = placed();
    // Within a file: name rules, then placement rules, then cmdline rules.
    let p = at("backup.service", "", "", "alice");
    assert_eq!(
        placed_labels(&c, "pg-custom", "", &p),
        is("db", "custom-pg")
    );
    assert_eq!(
        placed_labels(&c, "zz-x", "x --tenant y", &p),
        is("batch", "backup")
    );
    assert_eq!(
        placed_labels(&c, "zz-x", "x --tenant y", &Placement::default()),
        is("u", "cmd")
    );
    // Among placement rules, the earlier rule (unit before user here).
    let got = c.classify_placed("zz-x", "zz-x", "", &p);
    assert_eq!(
        got.rule.map(|r| r.matched_by()),
        Some(MatchedBy::Placement(Attribute::Unit))
    );
    // A user file's placement rule beats a built-in name rule; a built-in
    // cmdline... there are no built-in placement rules, so a later user
    // file's name rule beats an earlier file's nothing-matching.
    let p = at("backup.service", "", "", "");
    assert_eq!(placed_labels(&c, "postgres", "", &p), is("batch", "backup"));
    let two = with_user_files(&[
        (
            "first.toml",
            r#"subgroups = [{ group = "a", subgroup = "cmd", cmdline_matches = ["--x"] }]"#,
        ),
        (
            "second.toml",
            r#"subgroups = [{ group = "b", subgroup = "unit", unit_matches = ["u.service"] }]"#,
        ),
    ]);
    let p = at("u.service", "", "", "");
    assert_eq!(placed_labels(&two, "zz-x", "--x", &p), is("a", "cmd"));
    assert_eq!(placed_labels(&two, "zz-x", "", &p), is("b", "unit"));
}

#[test]
fn placement_rule_errors_name_file_line_and_rule() {
    let origin = RuleOrigin::File(PathBuf::from("t.toml"));
    let text =
        "subgroups = [\n  { group = \"a\", subgroup = \"b\", unit_matches = [\"x(\"] },\n]\n";
    let e = parse_rules(&origin, text).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert_eq!(e.column(), Some(50), "{e}");
    assert!(
        e.to_string()
            .starts_with("t.toml:2:50: invalid regex `x(`: unclosed group"),
        "{e}"
    );
    assert!(e.to_string().ends_with("(rule 1: a/b)"), "{e}");
    let text = r#"subgroups = [{ group = "a", subgroup = "b", user_matches = [""] }]"#;
    let e = parse_rules(&origin, text).unwrap_err();
    assert!(e.message().contains("empty `user_matches`"), "{e}");
    let text = r#"subgroups = [{ group = "a", subgroup = "b", units = ["x"] }]"#;
    let e = parse_rules(&origin, text).unwrap_err();
    assert!(e.message().contains("units"), "{e}");
    // A pattern that only anchoring breaks (an unbalanced group closed by
    // the wrapper) is still refused.
    let text = r#"subgroups = [{ group = "a", subgroup = "b", cgroup_matches = ["a)|(b"] }]"#;
    assert!(parse_rules(&origin, text).is_err());
}

#[test]
fn explain_shows_placement_and_why() {
    let c = placed();
    let p = at(
        "backup.service",
        "",
        "/system.slice/backup.service",
        "alice",
    );
    let text = c.explain_placed("tar", "tar", "tar cf -", &p);
    assert!(text.contains("unit:    \"backup.service\"\n"), "{text}");
    assert!(text.contains("container: none\n"), "{text}");
    assert!(
        text.contains("cgroup:  \"/system.slice/backup.service\"\n"),
        "{text}"
    );
    assert!(text.contains("user:    \"alice\"\n"), "{text}");
    assert!(text.contains("result:  batch/backup"), "{text}");
    assert!(
        text.contains(
            r#"because the unit matches regex "backup(@.*)?\\.service" of rule 2 (placed.toml:3)"#
        ),
        "{text}"
    );
    assert!(
        text.contains("people/alice: the user matches regex \"alice\""),
        "{text}"
    );
    // Without placement the report does not pretend to know it.
    let text = c.explain("tar", "tar", "");
    assert!(!text.contains("unit:"), "{text}");

    let list = render_list(&c, Some("people"), true);
    assert!(list.contains("PLACEMENT"), "{list}");
    assert!(
        list.contains("      user:    alice\n      user:    1000\n"),
        "{list}"
    );
}

// ------------------------------------------------------------ listing, explain

#[test]
fn subgroups_lists_every_rule_sorted() {
    let c = with_user_files(&[(
        "user.toml",
        r#"subgroups = [{ group = "db", subgroup = "postgres", matches = ["pg-custom"] }]"#,
    )]);
    let list = c.subgroups();
    let pg = list
        .iter()
        .find(|s| &*s.group == "db" && &*s.subgroup == "postgres")
        .unwrap();
    assert_eq!(pg.rule_count(), 2);
    assert_eq!(pg.rules[0].matches, ["pg-custom"]);
    assert_eq!(pg.rules[1].origin, RuleOrigin::Builtin);
    let keys: Vec<_> = list
        .iter()
        .map(|s| (s.group.clone(), s.subgroup.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn render_list_shows_table_filter_and_details() {
    let c = Classifier::builtin();
    let all = render_list(&c, None, false);
    assert!(all.starts_with("GROUP"), "{all}");
    assert!(all.contains("postgres"));
    let count = c.subgroups().len();
    assert!(all.contains(&format!("{count} subgroups in")), "{all}");

    let db = render_list(&c, Some("db"), false);
    assert!(db.contains("clickhouse"));
    assert!(!db.contains("nginx"));

    let verbose = render_list(&c, Some("messaging"), true);
    assert!(verbose.contains(r"\skafka\.Kafka(?:\s|$)"), "{verbose}");
    assert!(verbose.contains("built-in:"), "{verbose}");

    let none = render_list(&c, Some("nope"), false);
    assert!(
        none.starts_with("no subgroups in group \"nope\"; groups: "),
        "{none}"
    );
}

#[test]
fn explain_names_rule_kind_pattern_and_losers() {
    let c = Classifier::builtin();
    let text = c.explain("java", "java", &jvm("kafka.Kafka server.properties"));
    assert!(text.contains("result:  messaging/kafka"), "{text}");
    assert!(
        text.contains(r#"the cmdline matches regex "\\skafka\\.Kafka(?:\\s|$)""#),
        "{text}"
    );
    assert!(text.contains("built-in:"), "{text}");
    assert!(text.contains("runtime/java"), "{text}");

    let text = c.explain("nginx", "nginx", "nginx: worker process");
    assert!(text.contains("the comm equals name \"nginx\""), "{text}");

    let text = c.explain("mystery", "", "a\nfake line");
    assert!(text.contains("result:  other/unknown"), "{text}");
    assert!(
        text.contains(r#""a\nfake line""#),
        "cmdline must be quoted: {text}"
    );
}

#[test]
fn explain_target_reads_procfs() {
    let dir = tempfile::tempdir().unwrap();
    let proc_dir = dir.path().join("4242");
    std::fs::create_dir(&proc_dir).unwrap();
    std::fs::write(proc_dir.join("comm"), "java\n").unwrap();
    std::fs::write(
        proc_dir.join("cmdline"),
        b"/usr/bin/java\0-cp\0libs/*\0kafka.Kafka\0config/server.properties\0",
    )
    .unwrap();
    std::os::unix::fs::symlink("/usr/lib/jvm/bin/java (deleted)", proc_dir.join("exe")).unwrap();

    let c = Classifier::builtin();
    let text = explain_target(&c, dir.path(), "4242", None).unwrap();
    assert!(text.starts_with("pid:     4242\n"), "{text}");
    assert!(text.contains("comm:    \"java\"\n"), "{text}");
    assert!(text.contains("exe:     \"java\"\n"), "{text}");
    assert!(text.contains("result:  messaging/kafka"), "{text}");

    std::fs::remove_file(proc_dir.join("exe")).unwrap();
    let text = explain_target(&c, dir.path(), "4242", None).unwrap();
    assert!(text.contains("note:    exe link unreadable"), "{text}");

    let err = explain_target(&c, dir.path(), "999999", None).unwrap_err();
    assert!(err.starts_with("cannot read process 999999"), "{err}");

    let text = explain_target(&c, dir.path(), "clickhouse-server", None).unwrap();
    assert!(text.contains("result:  db/clickhouse"), "{text}");
    assert!(explain_target(&c, dir.path(), "  ", None).is_err());
}

#[test]
fn classifier_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
    assert_send_sync::<Classification>();
}

// ------------------------------------------------------------ properties

/// Names and cmdline fragments drawn from the built-in rules, so generated
/// inputs hit real rules (and near-misses of them) instead of only falling
/// through to other/unknown.
fn interesting_fragment() -> impl Strategy<Value = String> {
    let names: Vec<String> = builtin_rules()
        .into_iter()
        .flat_map(|r| r.matches)
        .chain(
            [
                "kafka.Kafka",
                "org.apache.catalina.startup.Bootstrap",
                "java",
                "/usr/bin/python3",
                "-s rabbit boot",
                "ora_pmon_X",
                "jenkins.war",
                "\0",
                " ",
                "\n",
                "é",
            ]
            .map(String::from),
        )
        .collect();
    prop_oneof![
        proptest::sample::select(names),
        any::<String>(),
        "[ -~]{0,12}",
    ]
}

fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        interesting_fragment(),
        proptest::collection::vec(interesting_fragment(), 0..8).prop_map(|parts| parts.join(" ")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn classify_never_panics_and_is_deterministic(comm in input(), exe in input(), cmdline in input()) {
        let c = builtin_for_props();
        let first = c.classify(&comm, &exe, &cmdline);
        let second = c.classify(&comm, &exe, &cmdline);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.rule.is_none(), &*first.group == OTHER_GROUP && &*first.subgroup == UNKNOWN_SUBGROUP);
    }

    #[test]
    fn fast_path_agrees_with_exhaustive_search(
        comm in input(),
        exe in input(),
        cmdline in input(),
        placement in proptest::collection::vec(proptest::option::of(placement_value()), 4),
    ) {
        let c = builtin_for_props();
        let p = Placement {
            unit: placement[0].as_deref(),
            container: placement[1].as_deref(),
            cgroup: placement[2].as_deref(),
            user: placement[3].as_deref(),
        };
        let fast = c.classify_placed(&comm, &exe, &cmdline, &p).rule;
        let slow = c.all_matches(&comm, &exe, &cmdline, &p).first().map(|m| m.rule_ref);
        prop_assert_eq!(fast, slow);
        let text = c.explain_placed(&comm, &exe, &cmdline, &p);
        prop_assert!(text.contains("result:  "));
    }

    #[test]
    fn explain_never_panics(comm in input(), exe in input(), cmdline in input()) {
        let c = builtin_for_props();
        let text = c.explain(&comm, &exe, &cmdline);
        prop_assert!(text.contains("result:  "));
    }
}

/// Placement values, some of which the property rules match.
fn placement_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("backup.service".to_string()),
        Just("docker://abc".to_string()),
        Just("/tenants/x".to_string()),
        Just("alice".to_string()),
        "\\PC{0,12}",
    ]
}

fn builtin_for_props() -> &'static Classifier {
    static CLASSIFIER: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
    CLASSIFIER.get_or_init(|| {
        // A user file on top of the built-ins, with rules that overlap them,
        // so cross-source precedence is exercised too.
        with_user_files(&[(
            "user.toml",
            r#"subgroups = [
  { group = "u", subgroup = "name", matches = ["nginx", "java"] },
  { group = "u", subgroup = "cmd", cmdline_matches = ['rabbit', '(?i)KAFKA', 'é+\s'] },
  { group = "u", subgroup = "placed", unit_matches = ['backup.*'], user_matches = ['alice'] },
  { group = "u", subgroup = "where", container_matches = ['docker://.*'], cgroup_matches = ['/tenants/.*', '.*'] },
]"#,
        )])
    })
}
