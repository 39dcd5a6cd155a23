/** The persistent change map (disconnected mode, resync): what other modules import. */
export { ChangeMap, type ChangeMapCreateOptions, type ChangeMapInfo, type ChangeMapOpenOptions, type RegionExpectation } from "./change-map.ts";
export { ChangeMapRegion, type DirtyRange, type DirtyRangesOptions, type RegionInfo } from "./region.ts";
export { changeMapLayoutBytes, isValidBlockSize, type RegionSpec } from "./format.ts";
export { createChangeMapAtPath, inspectChangeMapAtPath, openChangeMapAtPath, type ChangeMapCreateReport } from "./paths.ts";
export { describeChangeMap } from "./report-text.ts";
