// The dashboard's route editor reads and writes the lines it shows; a rule
// bound to a host must survive an edit (dropping the host would let the key
// reach every host's upstream).
import { test } from "node:test";
import assert from "node:assert/strict";

import { formatRoutes, parseRoutes } from "../src/admin/dashboard/js/format.js";

test("route lines keep a rule's host through an edit", () => {
  const stored = [
    { host: "api.example.com", path_prefix: "/v1/reports", methods: ["GET", "HEAD"] },
    { host: null, path_prefix: "/v1/orders", methods: [] },
    { host: "b.example", path_prefix: "/", methods: [] },
  ];
  const text = formatRoutes(stored);
  assert.equal(text, "GET,HEAD //api.example.com/v1/reports\n/v1/orders\n//b.example/");
  assert.deepEqual(parseRoutes(text), [
    { host: "api.example.com", path_prefix: "/v1/reports", methods: ["GET", "HEAD"] },
    { path_prefix: "/v1/orders" },
    { host: "b.example", path_prefix: "/" },
  ]);
  assert.equal(formatRoutes(parseRoutes(text)), text, "an unchanged text makes no patch");
});
