import Foundation
import XCTest
@testable import LoraTrain

/// LRSchedule against transformers' get_scheduler (scripts/make_schedule_fixtures.py).
final class ScheduleTests: XCTestCase {
    func testEveryStepMatchesTransformers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesRoot + "/schedule/schedules.json"))
        let doc = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cases = doc["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 7)
        for c in cases {
            let type = TrainingConfig.Scheduler(rawValue: c["type"] as! String)!
            let s = LRSchedule(type: type, baseLR: (c["base_lr"] as! NSNumber).doubleValue,
                               warmupSteps: (c["warmup_steps"] as! NSNumber).intValue,
                               totalSteps: (c["total_steps"] as! NSNumber).intValue)
            // Python's repr of each rate (Foundation's JSON number parser on Linux is not correctly rounded).
            let lrs = (c["lrs"] as! [String]).map { Double($0)! }
            XCTAssertEqual(lrs.count, 37)
            for (k, want) in lrs.enumerated() {
                XCTAssertEqual(s.lr(k), want, "\(type.rawValue) warmup \(s.warmupSteps) step \(k)")
            }
        }
    }

    func testWarmupStepsResolveAsTransformers() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixturesRoot + "/schedule/schedules.json"))
        let doc = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for w in doc["warmups"] as! [[String: Any]] {
            var c = TrainingConfig()
            c.warmupSteps = (w["warmup_steps"] as! NSNumber).doubleValue
            XCTAssertEqual(c.warmup(total: (w["total_steps"] as! NSNumber).intValue), (w["resolved"] as! NSNumber).intValue,
                           "warmup_steps \(c.warmupSteps)")
        }
        // The transformers 4 spelling: warmup_ratio, used when warmup_steps is 0.
        var c = TrainingConfig()
        c.warmupRatio = 0.1
        XCTAssertEqual(c.warmup(total: 37), 4)
        c.warmupSteps = 2
        XCTAssertEqual(c.warmup(total: 37), 2)
    }
}
