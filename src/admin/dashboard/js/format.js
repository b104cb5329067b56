// Turning API values into words. Pure functions, no DOM.

const dateFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
const hourFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const numFmt = new Intl.NumberFormat();

export const PERMISSIONS = {
  read: { label: "Read only", help: "GET, HEAD and OPTIONS requests: it can read but never change anything." },
  write: { label: "Write", help: "Every method, including POST, PUT, PATCH and DELETE." },
};

export const STATUSES = {
  active: "Active",
  disabled: "Disabled",
  expired: "Expired",
  revoked: "Revoked",
};

export function permissionLabel(p) {
  return (PERMISSIONS[p] && PERMISSIONS[p].label) || String(p);
}

export function statusLabel(s) {
  return STATUSES[s] || String(s);
}

export function number(n) {
  return numFmt.format(Number(n) || 0);
}

export function date(iso) {
  return iso ? dateFmt.format(new Date(iso)) : "";
}

export function dateTime(iso) {
  return iso ? dateTimeFmt.format(new Date(iso)) : "";
}

export function hour(iso) {
  return hourFmt.format(new Date(iso));
}

const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "3 minutes ago", "in 29 days", "just now". */
export function relative(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  for (const [unit, size] of UNITS) {
    if (abs >= size || unit === "second") {
      return relFmt.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

/** `YYYY-MM-DD` of a Date in local time, for `<input type=date>`. */
export function isoDay(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** RFC 3339 UTC of the end of a local calendar day given as `YYYY-MM-DD`. */
export function endOfDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d, 23, 59, 59).toISOString();
}

/** RFC 3339 UTC `days` from now. */
export function inDays(days) {
  return new Date(Date.now() + days * 24 * 3600 * 1000).toISOString();
}

/** "1 hour", "7 days" for a grace period in seconds. */
export function duration(seconds) {
  if (!seconds) return "no grace period";
  if (seconds % 86400 === 0) return seconds / 86400 === 1 ? "1 day" : `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return seconds / 3600 === 1 ? "1 hour" : `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

/** "GET, HEAD /v1/reports" style lines back into route rules; a path
 * written "//api.example.com/v1" binds the rule to that host, as the CLI
 * writes it, so an edit never drops a rule's host. */
export function parseRoutes(text) {
  const rules = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const parts = line.split(/[\s,]+/).filter(Boolean);
    const path = parts.find((p) => p.startsWith("/"));
    const methods = parts.filter((p) => !p.startsWith("/")).map((m) => m.toUpperCase());
    const bound = /^\/\/([^/]+)(\/.*)?$/.exec(path || "");
    const rule = bound ? { host: bound[1], path_prefix: bound[2] || "/" } : { path_prefix: path || "" };
    if (methods.length) rule.methods = methods;
    rules.push(rule);
  }
  return rules;
}

export function formatRoutes(rules) {
  return (rules || [])
    .map((r) => (r.methods && r.methods.length ? r.methods.join(",") + " " : "") + (r.host ? "//" + r.host : "") + r.path_prefix)
    .join("\n");
}

export function lines(text) {
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export const QUOTA_PERIODS = ["day", "week", "month", "total"];

/** "10,000 a month", "500 in total (prepaid)". */
export function quotaLimit(q) {
  if (!q) return "";
  return q.period === "total" ? `${number(q.limit)} in total` : `${number(q.limit)} a ${q.period}`;
}

/** How full a quota is, 0..1, from its usage. */
export function quotaFill(usage) {
  if (!usage) return 0;
  const all = usage.used + usage.remaining;
  return all > 0 ? Math.min(1, usage.used / all) : 1;
}
