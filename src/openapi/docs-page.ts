// The browsable API page: a small HTML page and its own script, both served by Juniper (no CDN, no inline
// script: the page policy is script-src 'self'). The script reads /api/v1/openapi.json and lists each
// operation with its parameters and request body schema.
export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Juniper API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/app.css">
<script src="/api/v1/docs/docs.js" defer></script>
</head>
<body>
<main>
<h1>Juniper API</h1>
<p>Generated from the schemas that validate each request: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.0).
Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code>.</p>
<p><label>Filter <input id="filter" type="search" placeholder="path or summary"></label></p>
<div id="operations"><p>Loading…</p></div>
</main>
</body>
</html>
`;

export const DOCS_JS = `'use strict';
(function () {
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function render(doc, filter) {
    var root = document.getElementById('operations');
    root.textContent = '';
    var byTag = {};
    Object.keys(doc.paths).sort().forEach(function (path) {
      Object.keys(doc.paths[path]).forEach(function (method) {
        var op = doc.paths[path][method];
        var line = method.toUpperCase() + ' ' + path + ' ' + op.summary;
        if (filter && line.toLowerCase().indexOf(filter) < 0) return;
        var tag = (op.tags && op.tags[0]) || 'other';
        (byTag[tag] = byTag[tag] || []).push({ path: path, method: method, op: op });
      });
    });
    Object.keys(byTag).forEach(function (tag) {
      root.appendChild(el('h2', tag));
      byTag[tag].forEach(function (x) {
        var d = el('details');
        d.id = x.op.operationId;
        var s = el('summary');
        s.appendChild(el('code', x.method.toUpperCase() + ' ' + x.path));
        s.appendChild(document.createTextNode(' ' + x.op.summary));
        d.appendChild(s);
        d.appendChild(el('p', x.op.description || ''));
        if (x.op.parameters) {
          var t = el('table');
          var head = el('tr');
          ['name', 'in', 'required', 'schema'].forEach(function (h) { head.appendChild(el('th', h)); });
          t.appendChild(head);
          x.op.parameters.forEach(function (p) {
            var r = el('tr');
            r.appendChild(el('td', p.name));
            r.appendChild(el('td', p.in));
            r.appendChild(el('td', p.required ? 'yes' : 'no'));
            r.appendChild(el('td', JSON.stringify(p.schema)));
            t.appendChild(r);
          });
          d.appendChild(t);
        }
        if (x.op.requestBody) {
          d.appendChild(el('h3', 'Request body'));
          d.appendChild(el('pre', JSON.stringify(x.op.requestBody.content['application/json'].schema, null, 2)));
        }
        d.appendChild(el('h3', 'Responses'));
        Object.keys(x.op.responses).forEach(function (code) {
          d.appendChild(el('p', code + ': ' + x.op.responses[code].description));
        });
        root.appendChild(d);
      });
    });
  }
  fetch('/api/v1/openapi.json').then(function (r) { return r.json(); }).then(function (doc) {
    var input = document.getElementById('filter');
    render(doc, '');
    input.addEventListener('input', function () { render(doc, input.value.trim().toLowerCase()); });
  }, function (err) {
    document.getElementById('operations').textContent = 'Could not load the API description: ' + err;
  });
})();
`;
