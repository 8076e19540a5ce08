'use strict';
// A SOFA Bolt provider on sofa-bolt-node: `node bolt_server.js PORT NAME`.
// Answers every call with "<NAME>:<service>:<method>:<first arg>"; a method named
// "sleep" answers after <first arg> milliseconds; heartbeats are acknowledged.
// Prints "ready" once listening, then one line per connection accepted.
const net = require('net');
const pump = require('pump');
const protocol = require('sofa-bolt-node');

const port = Number(process.argv[2]);
const name = process.argv[3] || 'provider';

const server = net.createServer(socket => {
  console.log('connection');
  const options = { sentReqs: new Map() };
  const encoder = protocol.encoder(options);
  const decoder = protocol.decoder(options);
  pump(encoder, socket, decoder, () => {});
  decoder.on('request', req => {
    const arg = req.data.args.length ? String(req.data.args[0]) : '';
    const answer = () => encoder.writeResponse(req, {
      isError: false,
      appResponse: { $class: 'java.lang.String', $: `${name}:${req.data.serverSignature}:${req.data.methodName}:${arg}` },
    });
    if (req.data.methodName === 'sleep') setTimeout(answer, Number(arg));
    else answer();
  });
  decoder.on('heartbeat', hb => encoder.writeHeartbeatAck(hb));
});
server.listen(port, '127.0.0.1', () => console.log('ready'));
