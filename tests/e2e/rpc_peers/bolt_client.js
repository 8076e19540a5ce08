'use strict';
// A SOFA Bolt consumer on sofa-bolt-node: `node bolt_client.js PORT JSON`, where JSON
// is a list of steps run together on one connection: {service, method, arg} is a call,
// {heartbeat: true} a heartbeat. Prints one JSON line: the result of each step in
// order ({ok: value} / {error: message} / {heartbeat: "ack"}, each with the Bolt
// response status read off the wire), or {timeout} if none came.
const net = require('net');
const pump = require('pump');
const protocol = require('sofa-bolt-node');

const port = Number(process.argv[2]);
const steps = JSON.parse(process.argv[3]);
const results = new Array(steps.length).fill(null);
let left = steps.length;
const options = { sentReqs: new Map() };
const encoder = protocol.encoder(options);
const decoder = protocol.decoder(options);
const socket = net.connect(port, '127.0.0.1');
// the response status of each id, read from the raw bytes (the decoder keeps it to itself)
const statuses = new Map();
let raw = Buffer.alloc(0);
socket.on('data', chunk => {
  raw = Buffer.concat([ raw, chunk ]);
  while (raw.length >= 20 && raw[1] === 0) {
    const total = 20 + raw.readInt16BE(12) + raw.readInt16BE(14) + raw.readInt32BE(16);
    if (raw.length < total) break;
    statuses.set(raw.readInt32BE(5), raw.readUInt16BE(10));
    raw = raw.subarray(total);
  }
});

pump(encoder, socket, decoder, () => {});

function done(i, value) {
  if (results[i] !== null) return;
  value.status = statuses.get(i + 1);
  results[i] = value;
  if (--left === 0) {
    console.log(JSON.stringify(results));
    socket.destroy();
    process.exit(0);
  }
}
decoder.on('response', res => {
  const i = res.packetId - 1;
  if (res.data.error) done(i, { error: res.data.error.message });
  else done(i, { ok: res.data.appResponse });
});
decoder.on('heartbeat_ack', hb => done(hb.packetId - 1, { heartbeat: 'ack' }));
socket.once('connect', () => {
  steps.forEach((s, i) => {
    const id = i + 1;
    if (s.heartbeat) return encoder.writeHeartbeat(id, { clientUrl: 'test' });
    const req = {
      args: [{ $class: 'java.lang.String', $: String(s.arg) }],
      serverSignature: s.service,
      methodName: s.method,
      timeout: 30000,
    };
    options.sentReqs.set(id, { req });
    encoder.writeRequest(id, req);
  });
});
setTimeout(() => {
  results.forEach((r, i) => { if (r === null) results[i] = { timeout: true }; });
  console.log(JSON.stringify(results));
  process.exit(0);
}, Number(process.env.CLIENT_WAIT_MS || 20000));
