/** `druvaa admin cert`: node certificates signed by the druvaa CA. */
import { command } from "../cli-support.ts";

export default command({
  meta: { name: "cert", description: "Issue and revoke node certificates (role, devices) signed by the druvaa CA" },
  subCommands: {
    issue: () => import("./admin-cert-issue.ts").then((m) => m.default),
    revoke: () => import("./admin-cert-revoke.ts").then((m) => m.default),
  },
  examples: [
    "druvaa admin cert issue --role staging --name staging1 --host staging1.example.com --out /tmp/certs",
    "druvaa admin cert revoke --cert /tmp/certs/db1.pem",
  ],
});
