/** The per-platform packages under npm/, by folder name. */
export declare function platformPackages(): Array<{ dir: string; manifest: Record<string, unknown> }>
/** The root package.json with the published optionalDependencies. */
export declare function releaseManifest(): Record<string, unknown> & { optionalDependencies: Record<string, string> }
