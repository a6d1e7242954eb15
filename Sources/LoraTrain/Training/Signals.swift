import Foundation
import Synchronization

/// The signal (SIGINT or SIGTERM) that asked training to stop, 0 while none did.
/// Set by the handler, read between steps.
let stopSignal = Atomic<Int32>(0)

/// SIGINT / SIGTERM handlers that only record the signal: the loop finishes
/// its current step, saves a checkpoint and returns. A second signal exits at once.
enum StopSignals {
    static func install() {
        stopSignal.store(0, ordering: .sequentiallyConsistent)
        for s in [SIGINT, SIGTERM] {
            signal(s) { sig in
                if stopSignal.exchange(sig, ordering: .sequentiallyConsistent) != 0 { _exit(128 + sig) }
            }
        }
    }

    static func uninstall() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }

    static var received: Int32 { stopSignal.load(ordering: .sequentiallyConsistent) }
}
