import ArgumentParser

/// Release-mode benchmark harness driven by `Tools/bench`. Each subcommand measures one feature and
/// writes a JSON file that `Tools/bench_report.py` turns into tables beside the peer systems.
@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vecstore-bench",
        abstract: "Benchmarks for vecstore (build with -c release; run through Tools/bench).",
        subcommands: [ExactBench.self, HNSWBench.self, BM25Bench.self, ScaleBench.self, IVFBench.self, PCABench.self,
                      EmbedBench.self, HNSWTraversalBench.self, OpenOnceBench.self,
                      QueryLoopBench.self])
}
