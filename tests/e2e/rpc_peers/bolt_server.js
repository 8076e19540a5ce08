'use strict';
// A SOFA Bolt provider on sofa-bolt-node: `node bolt_server.js PORT NAME`.
// Answers every call with "<NAME>:<service>:<method>:<first arg>"; a method named
// "sleep" answers after <first arg> milliseconds; a method named "headers" answers
// with the request's Bolt header map as JSON (read off the wire, since the Hessian
// decoder skips it); heartbeats are acknowledged.
// Prints "ready" once listening, then one line per connection accepted.
const net = require('net');
const pump = require('pump');
const protocol = require('sofa-bolt-node');
const SimpleMapSerializer = require('sofa-bolt-node/lib/simple_map_serializer');

const port = Number(process.argv[2]);
const name = process.argv[3] || 'provider';

const server = net.createServer(socket => {
  console.log('connection');
  const options = { sentReqs: new Map() };
  const encoder = protocol.encoder(options);
  const decoder = protocol.decoder(options);
  // each request's header map by id, from the raw bytes (requests and one-ways, cmdcode 1)
  const headers = new Map();
  let raw = Buffer.alloc(0);
  socket.on('data', chunk => {
    raw = Buffer.concat([ raw, chunk ]);
    for (;;) {
      const response = raw.length >= 2 && raw[1] === 0;
      const head = response ? 20 : 22;
      if (raw.length < head) break;
      const classLen = raw.readInt16BE(head - 8);
      const headerLen = raw.readInt16BE(head - 6);
      const total = head + classLen + headerLen + raw.readInt32BE(head - 4);
      if (raw.length < total) break;
      if (!response && raw.readInt16BE(2) === 1) {
        headers.set(raw.readInt32BE(5), SimpleMapSerializer.decode(raw.subarray(head + classLen, head + classLen + headerLen)));
      }
      raw = raw.subarray(total);
    }
  });
  pump(encoder, socket, decoder, () => {});
  decoder.on('request', req => {
    const arg = req.data.args.length ? String(req.data.args[0]) : '';
    const seen = headers.get(req.packetId) || {};
    headers.delete(req.packetId);
    const text = req.data.methodName === 'headers' ? JSON.stringify(seen)
      : `${name}:${req.data.serverSignature}:${req.data.methodName}:${arg}`;
    const answer = () => encoder.writeResponse(req, {
      isError: false,
      appResponse: { $class: 'java.lang.String', $: text },
    });
    if (req.data.methodName === 'sleep') setTimeout(answer, Number(arg));
    else answer();
  });
  decoder.on('heartbeat', hb => encoder.writeHeartbeatAck(hb));
});
server.listen(port, '127.0.0.1', () => console.log('ready'));
