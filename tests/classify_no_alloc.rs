//! Classification must not allocate: it runs for every new process on every
//! scrape, often from several threads, and the labels it hands out are
//! meant to be shared, not copied. This test counts heap allocations made by
//! the classifying thread with a wrapping global allocator (in its own test
//! binary, so it cannot disturb other tests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use herakles_node_exporter::classify::Classifier;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn classifying_does_not_allocate() {
    let classifier = Classifier::builtin();
    let inputs = [
        ("postgres", "postgres", "postgres: 16/main: checkpointer"),
        (
            "containerd-shim",
            "containerd-shim-runc-v2",
            "/usr/bin/containerd-shim-runc-v2 -id x",
        ),
        (
            "java",
            "java",
            "/usr/bin/java -cp /opt/kafka/libs/* kafka.Kafka server.properties",
        ),
        ("java", "java", "/usr/bin/java -cp app.jar com.example.Main"),
        ("python3", "python3.12", "/usr/bin/python3 /srv/worker.py"),
        ("kworker/0:1", "", ""),
        (
            "acme-svc",
            "acme-svc",
            "/opt/acme/bin/acme-svc --listen :9000",
        ),
    ];
    // The regex crate allocates a per-thread search cache on first use.
    for (comm, exe, cmdline) in inputs {
        classifier.classify(comm, exe, cmdline);
    }

    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        for (comm, exe, cmdline) in inputs {
            std::hint::black_box(classifier.classify(comm, exe, cmdline));
        }
    }
    assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);

    // The documented exception, which also shows the counter works: a raw
    // NUL-separated cmdline is converted into a fresh string.
    let before = ALLOCATIONS.with(Cell::get);
    std::hint::black_box(classifier.classify("java", "java", "java\0-jar\0x.jar"));
    assert!(ALLOCATIONS.with(Cell::get) > before);
}
