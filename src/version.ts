/** The druvaa release, kept in step with package.json (checked by tests/cli.test.ts). */
export const druvaaVersion = "0.1.0";
