import XCTest
@testable import LoraText
