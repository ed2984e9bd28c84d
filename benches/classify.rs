//! Classification throughput with the built-in rules.
//!
//! The input imitates a busy server's process table: about half the
//! processes are recognised by comm alone, a fifth are JVMs or interpreters
//! told apart by their cmdline, and the rest match nothing (kernel threads,
//! in-house daemons, shells running scripts), which is the most expensive
//! case because every stage runs and fails.
//!
//! Run with `cargo bench --bench classify`; the `mix` throughput is
//! classifications per second.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use herakles_node_exporter::classify::Classifier;

struct Process {
    comm: String,
    exe: String,
    cmdline: String,
}

fn process(comm: &str, exe: &str, cmdline: &str) -> Process {
    Process {
        comm: comm.to_string(),
        exe: exe.to_string(),
        cmdline: cmdline.to_string(),
    }
}

/// A classpath of `jars` entries, like the ones start scripts build.
fn classpath(dir: &str, jars: usize) -> String {
    (0..jars)
        .map(|i| format!("{dir}/lib/component-{i:02}-3.7.{}.jar", i % 5))
        .collect::<Vec<_>>()
        .join(":")
}

fn jvm(dir: &str, jars: usize, main: &str) -> Process {
    let cmdline = format!(
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms2g -Xmx2g -XX:+UseG1GC \
         -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true -Dlog4j.configurationFile={dir}/config/log4j2.xml \
         -cp {} {main}",
        classpath(dir, jars)
    );
    process("java", "java", &cmdline)
}

fn mix() -> Vec<Process> {
    let mut ps = Vec::new();

    // Recognised by comm (about half).
    for (comm, exe, cmdline) in [
        ("systemd", "systemd", "/sbin/init splash"),
        ("systemd-journal", "systemd-journald", "/usr/lib/systemd/systemd-journald"),
        ("systemd-udevd", "systemd-udevd", "/usr/lib/systemd/systemd-udevd"),
        ("systemd-logind", "systemd-logind", "/usr/lib/systemd/systemd-logind"),
        ("systemd-resolve", "systemd-resolved", "/usr/lib/systemd/systemd-resolved"),
        ("systemd-timesyn", "systemd-timesyncd", "/usr/lib/systemd/systemd-timesyncd"),
        ("dbus-daemon", "dbus-daemon", "@dbus-daemon --system --address=systemd: --nofork"),
        ("sshd", "sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
        ("sshd-session", "sshd-session", "sshd-session: admin [priv]"),
        ("cron", "cron", "/usr/sbin/cron -f -P"),
        ("rsyslogd", "rsyslogd", "/usr/sbin/rsyslogd -n -iNONE"),
        ("chronyd", "chronyd", "/usr/sbin/chronyd -F 1"),
        ("agetty", "agetty", "/sbin/agetty -o -p -- \\u --noclear - linux"),
        ("polkitd", "polkitd", "/usr/lib/polkit-1/polkitd --no-debug"),
        ("containerd", "containerd", "/usr/bin/containerd"),
        ("dockerd", "dockerd", "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"),
        ("containerd-shim", "containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2 -namespace moby -id 1f2e3d -address /run/containerd/containerd.sock"),
        ("kubelet", "kubelet", "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml"),
        ("kube-proxy", "kube-proxy", "/usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.conf"),
        ("etcd", "etcd", "etcd --data-dir=/var/lib/etcd --name=node-1"),
        ("kube-apiserver", "kube-apiserver", "kube-apiserver --advertise-address=10.0.0.1 --etcd-servers=https://127.0.0.1:2379"),
        ("coredns", "coredns", "/coredns -conf /etc/coredns/Corefile"),
        ("cilium-agent", "cilium-agent", "cilium-agent --config-dir=/tmp/cilium/config-map"),
        ("postgres", "postgres", "/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main"),
        ("postgres", "postgres", "postgres: 16/main: checkpointer"),
        ("postgres", "postgres", "postgres: 16/main: app app 10.0.0.7(51324) idle"),
        ("postgres", "postgres", "postgres: 16/main: walwriter"),
        ("postgres", "postgres", "postgres: 16/main: autovacuum launcher"),
        ("pgbouncer", "pgbouncer", "/usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini"),
        ("mysqld", "mysqld", "/usr/sbin/mysqld"),
        ("mariadbd", "mariadbd", "/usr/sbin/mariadbd"),
        ("mongod", "mongod", "/usr/bin/mongod --config /etc/mongod.conf"),
        ("redis-server", "redis-server", "/usr/bin/redis-server 127.0.0.1:6379"),
        ("clickhouse-serv", "clickhouse", "/usr/bin/clickhouse-server --config=/etc/clickhouse-server/config.xml"),
        ("memcached", "memcached", "/usr/bin/memcached -m 64 -p 11211 -u memcache -l 127.0.0.1"),
        ("nginx", "nginx", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"),
        ("nginx", "nginx", "nginx: worker process"),
        ("nginx", "nginx", "nginx: worker process"),
        ("nginx", "nginx", "nginx: worker process"),
        ("apache2", "apache2", "/usr/sbin/apache2 -k start"),
        ("apache2", "apache2", "/usr/sbin/apache2 -k start"),
        ("haproxy", "haproxy", "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid"),
        ("envoy", "envoy", "envoy -c /etc/envoy/envoy.yaml --service-cluster front"),
        ("traefik", "traefik", "traefik --configFile=/etc/traefik/traefik.yml"),
        ("varnishd", "varnishd", "/usr/sbin/varnishd -j unix,user=vcache -F -a :6081"),
        ("cache-main", "varnishd", "/usr/sbin/varnishd -j unix,user=vcache -F -a :6081"),
        ("prometheus", "prometheus", "/bin/prometheus --config.file=/etc/prometheus/prometheus.yml"),
        ("alertmanager", "alertmanager", "/bin/alertmanager --config.file=/etc/alertmanager/alertmanager.yml"),
        ("grafana", "grafana", "grafana server --homepath=/usr/share/grafana"),
        ("node_exporter", "node_exporter", "/usr/local/bin/node_exporter --collector.systemd"),
        ("otelcol-contrib", "otelcol-contrib", "/otelcol-contrib --config /etc/otelcol/config.yaml"),
        ("zabbix_agent2", "zabbix_agent2", "/usr/sbin/zabbix_agent2 -c /etc/zabbix/zabbix_agent2.conf"),
        ("fluent-bit", "fluent-bit", "/opt/fluent-bit/bin/fluent-bit -c /etc/fluent-bit/fluent-bit.conf"),
        ("vector", "vector", "/usr/bin/vector --config /etc/vector/vector.yaml"),
        ("promtail", "promtail", "/usr/bin/promtail -config.file=/etc/promtail/config.yml"),
        ("falcon-sensor", "falcon-sensor", "/opt/CrowdStrike/falcon-sensor"),
        ("wazuh-modulesd", "wazuh-modulesd", "/var/ossec/bin/wazuh-modulesd"),
        ("osqueryd", "osqueryd", "/opt/osquery/bin/osqueryd --flagfile /etc/osquery/osquery.flags"),
        ("auditd", "auditd", "/sbin/auditd"),
        ("crowdsec", "crowdsec", "/usr/bin/crowdsec -c /etc/crowdsec/config.yaml"),
        ("gitlab-runner", "gitlab-runner", "/usr/bin/gitlab-runner run --working-directory /home/gitlab-runner"),
        ("Runner.Listener", "Runner.Listener", "/home/runner/actions-runner/bin/Runner.Listener run --startuptype service"),
        ("buildkitd", "buildkitd", "buildkitd --addr unix:///run/buildkit/buildkitd.sock"),
        ("php-fpm8.2", "php-fpm8.2", "php-fpm: pool www"),
        ("php-fpm8.2", "php-fpm8.2", "php-fpm: pool www"),
        ("master", "master", "/usr/lib/postfix/sbin/master -w"),
        ("qmgr", "qmgr", "qmgr -l -t unix -u"),
        ("pickup", "pickup", "pickup -l -t unix -u -c"),
        ("veeamservice", "veeamservice", "/usr/sbin/veeamservice --daemonize --pidfile=/var/run/veeamservice.pid"),
        ("bacula-fd", "bacula-fd", "/usr/sbin/bacula-fd -fP -c /etc/bacula/bacula-fd.conf"),
        ("restic", "restic", "restic backup /srv --exclude-caches"),
        ("tritonserver", "tritonserver", "tritonserver --model-repository=/models"),
        ("ollama", "ollama", "/usr/local/bin/ollama serve"),
        ("Xorg", "Xorg", "/usr/lib/xorg/Xorg :0 -seat seat0 -auth /run/lightdm/root/:0"),
        ("pipewire", "pipewire", "/usr/bin/pipewire"),
        ("gnome-shell", "gnome-shell", "/usr/bin/gnome-shell"),
        ("NetworkManager", "NetworkManager", "/usr/sbin/NetworkManager --no-daemon"),
        ("wpa_supplicant", "wpa_supplicant", "/sbin/wpa_supplicant -u -s -O /run/wpa_supplicant"),
        ("bash", "bash", "-bash"),
        ("bash", "bash", "/bin/bash /usr/local/bin/healthcheck.sh"),
        ("tmux: server", "tmux", "tmux"),
        ("qemu-system-x86", "qemu-system-x86_64", "/usr/bin/qemu-system-x86_64 -name guest=vm1 -machine pc-q35-8.2"),
        ("libvirtd", "libvirtd", "/usr/sbin/libvirtd --timeout 120"),
        ("ceph-osd", "ceph-osd", "/usr/bin/ceph-osd -f --cluster ceph --id 3"),
        ("smbd", "smbd", "/usr/sbin/smbd --foreground --no-process-group"),
        ("named", "named", "/usr/sbin/named -f -u bind"),
        ("unbound", "unbound", "/usr/sbin/unbound -d -p"),
        ("amazon-ssm-agen", "amazon-ssm-agent", "/snap/amazon-ssm-agent/7993/amazon-ssm-agent"),
        ("snapd", "snapd", "/usr/lib/snapd/snapd"),
        ("irqbalance", "irqbalance", "/usr/sbin/irqbalance --foreground"),
        ("udisksd", "udisksd", "/usr/libexec/udisks2/udisksd"),
        ("upowerd", "upowerd", "/usr/libexec/upowerd"),
        ("tailscaled", "tailscaled", "/usr/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state"),
        ("keepalived", "keepalived", "/usr/sbin/keepalived --dont-fork"),
        ("consul", "consul", "consul agent -config-dir=/etc/consul.d"),
        ("nomad", "nomad", "nomad agent -config /etc/nomad.d"),
        ("vault", "vault", "vault server -config=/etc/vault.d/vault.hcl"),
        ("minio", "minio", "minio server /data --console-address :9001"),
        ("kthreadd", "", ""),
        ("kswapd0", "", ""),
        ("postgres", "postgres", "postgres: 16/main: app app 10.0.0.8(51330) idle in transaction"),
        ("postgres", "postgres", "postgres: 16/main: background writer"),
        ("php-fpm8.2", "php-fpm8.2", "php-fpm: pool www"),
        ("php-fpm8.2", "php-fpm8.2", "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"),
        ("nginx", "nginx", "nginx: worker process"),
        ("nginx", "nginx", "nginx: cache manager process"),
        ("containerd-shim", "containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 9a8b7c -address /run/containerd/containerd.sock"),
        ("containerd-shim", "containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 6d5e4f -address /run/containerd/containerd.sock"),
    ] {
        ps.push(process(comm, exe, cmdline));
    }

    // Told apart by cmdline: JVMs of several sizes and interpreters.
    ps.push(jvm(
        "/opt/kafka",
        40,
        "kafka.Kafka /opt/kafka/config/server.properties",
    ));
    ps.push(jvm(
        "/opt/kafka",
        40,
        "kafka.Kafka /opt/kafka/config/server.properties",
    ));
    ps.push(jvm(
        "/opt/kafka",
        30,
        "org.apache.kafka.connect.cli.ConnectDistributed /opt/kafka/config/connect.properties",
    ));
    ps.push(jvm(
        "/usr/share/elasticsearch",
        12,
        "-m org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch",
    ));
    ps.push(jvm(
        "/usr/share/logstash",
        20,
        "org.logstash.Logstash --path.settings /etc/logstash",
    ));
    ps.push(jvm(
        "/var/lib/tomcat9",
        8,
        "-Dcatalina.base=/var/lib/tomcat9 org.apache.catalina.startup.Bootstrap start",
    ));
    ps.push(jvm(
        "/opt/cassandra",
        35,
        "org.apache.cassandra.service.CassandraDaemon",
    ));
    ps.push(jvm(
        "/opt/zookeeper",
        15,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg",
    ));
    ps.push(jvm(
        "/opt/hadoop",
        25,
        "org.apache.hadoop.hdfs.server.namenode.NameNode",
    ));
    ps.push(jvm(
        "/opt/hadoop",
        25,
        "org.apache.hadoop.hdfs.server.datanode.DataNode",
    ));
    ps.push(jvm("/opt/app", 10, "com.example.billing.Main --port 8080"));
    ps.push(jvm("/opt/app", 10, "com.example.ledger.Main --port 8081"));
    ps.push(process(
        "java",
        "java",
        "java -Djava.awt.headless=true -jar /usr/share/java/jenkins.war --webroot=/var/cache/jenkins/war --httpPort=8080",
    ));
    ps.push(process(
        "java",
        "java",
        "java -jar /home/jenkins/agent.jar -url https://ci.example.com/ -secret 0123456789abcdef -name builder-1 -workDir /home/jenkins",
    ));
    ps.push(process(
        "beam.smp",
        "beam.smp",
        "/usr/lib/erlang/erts-13.2/bin/beam.smp -W w -MBas ageffcbf -MHas ageffcbf -MBlmbcs 512 -MHlmbcs 512 -MMmcs 30 -P 1048576 -t 5000000 -stbt db -zdbbl 128000 -sbwt none -B i -- -root /usr/lib/erlang -bindir /usr/lib/erlang/erts-13.2/bin -progname erl -- -home /var/lib/rabbitmq -- -pa -noshell -noinput -s rabbit boot -boot start_sasl",
    ));
    for (comm, exe, cmdline) in [
        (
            "python3",
            "python3.12",
            "/usr/bin/python3 -m vllm.entrypoints.openai.api_server --model meta-llama/Llama-3-8B",
        ),
        (
            "python3",
            "python3.12",
            "/usr/bin/python3 /usr/bin/networkd-dispatcher --run-startup-triggers",
        ),
        (
            "python3",
            "python3.12",
            "/usr/bin/python3 /opt/app/worker.py --queue default",
        ),
        (
            "python3",
            "python3.12",
            "/usr/bin/python3 -m http.server 8000",
        ),
        (
            "celery",
            "python3.11",
            "/opt/app/venv/bin/python /opt/app/venv/bin/celery -A app worker --loglevel=INFO",
        ),
        (
            "gunicorn",
            "python3.11",
            "/opt/app/venv/bin/python /opt/app/venv/bin/gunicorn app.wsgi:application -w 4",
        ),
        ("node", "node", "node /srv/frontend/server.js"),
        (
            "node",
            "node",
            "/usr/bin/node /usr/lib/node_modules/npm/bin/npm-cli.js run start",
        ),
        ("ruby", "ruby", "puma 6.4.2 (tcp://0.0.0.0:3000) [app]"),
        ("ruby", "ruby", "sidekiq 7.2.0 app [0 of 10 busy]"),
        ("dotnet", "dotnet", "/usr/bin/dotnet /srv/api/Api.dll"),
        ("ora_pmon_orcl", "oracle", "ora_pmon_ORCL"),
        (
            "perl",
            "perl",
            "/usr/bin/perl /usr/sbin/munin-node --foreground",
        ),
        (
            "postgres_export",
            "postgres_exporter",
            "/usr/bin/postgres_exporter --web.listen-address=:9187",
        ),
    ] {
        ps.push(process(comm, exe, cmdline));
    }

    // Unknown: kernel threads and in-house software.
    for name in [
        "rcu_preempt",
        "migration/0",
        "irq/42-nvme0q1",
        "jbd2/nvme0n1p2-8",
        "kworker/u16:2-flush-259:0",
        "xfsaild/dm-0",
        "scsi_eh_0",
    ] {
        ps.push(process(name, "", ""));
    }
    for cpu in 0..16 {
        ps.push(process(&format!("kworker/{cpu}:1-events"), "", ""));
        ps.push(process(&format!("ksoftirqd/{cpu}"), "", ""));
    }
    for i in 0..16 {
        let name = format!("acme-svc-{i}");
        let cmdline = format!(
            "/opt/acme/bin/{name} --config /etc/acme/{name}.yaml --listen 127.0.0.1:{} --log-level info",
            9000 + i
        );
        ps.push(process(&name, &name, &cmdline));
    }
    for (comm, exe, cmdline) in [
        ("sleep", "sleep", "sleep 3600"),
        ("tail", "tail", "tail -F /var/log/app/app.log"),
        ("less", "less", "less /var/log/syslog"),
        ("htop", "htop", "htop"),
        ("vim", "vim.basic", "vim /etc/hosts"),
        ("ps", "ps", "ps aux"),
        ("awk", "mawk", "awk {print $1}"),
        (
            "my_backup.sh",
            "bash",
            "/bin/bash /usr/local/bin/my_backup.sh --full",
        ),
    ] {
        ps.push(process(comm, exe, cmdline));
    }
    ps
}

fn bench(c: &mut Criterion) {
    let classifier = Classifier::builtin();
    let processes = mix();

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(processes.len() as u64));
    group.bench_function(format!("mix of {}", processes.len()), |b| {
        b.iter(|| {
            for p in &processes {
                black_box(classifier.classify(
                    black_box(&p.comm),
                    black_box(&p.exe),
                    black_box(&p.cmdline),
                ));
            }
        })
    });

    // The cost by path, to see where the time goes.
    let by_comm = process("postgres", "postgres", "postgres: 16/main: checkpointer");
    let kafka = jvm(
        "/opt/kafka",
        40,
        "kafka.Kafka /opt/kafka/config/server.properties",
    );
    let unknown = process(
        "acme-svc",
        "acme-svc",
        "/opt/acme/bin/acme-svc --config /etc/acme/acme-svc.yaml --listen 127.0.0.1:9000",
    );
    group.throughput(Throughput::Elements(1));
    for (name, p) in [
        ("by comm", &by_comm),
        ("kafka jvm", &kafka),
        ("unknown", &unknown),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                classifier.classify(black_box(&p.comm), black_box(&p.exe), black_box(&p.cmdline))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
