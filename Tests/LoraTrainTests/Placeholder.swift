import XCTest
@testable import LoraTrain
