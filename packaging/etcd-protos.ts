// The etcd client (npm etcd3) reads its gRPC service definitions from .proto files next to
// its own code when it is first loaded; a single executable has no such files. This esbuild
// plugin parses those files at build time and puts their JSON form into the bundle, where
// @grpc/proto-loader's fromJSON builds the same package definition from it.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Plugin } from 'esbuild'

const CONNECTION_POOL = /[\\/]node_modules[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/
// biome-ignore lint/suspicious/noTemplateCurlyInString: the text of a line in etcd3's compiled source, matched literally
const LOAD_PROTO = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {'

interface ProtobufRoot {
  loadSync(file: string, options: { keepCase: boolean }): ProtobufRoot
  toJSON(): unknown
}

export const etcdProtosInline: Plugin = {
  name: 'etcd-protos-inline',
  setup(build) {
    build.onLoad({ filter: CONNECTION_POOL }, (args) => {
      const source = readFileSync(args.path, 'utf8')
      if (!source.includes(LOAD_PROTO)) {
        throw new Error(`${args.path} no longer loads rpc.proto as packaging/etcd-protos.ts expects: update the plugin for this etcd3 version`)
      }
      const proto = join(dirname(args.path), '../proto/rpc.proto')
      // The protobufjs that etcd3's own @grpc/proto-loader uses, with the option loadSync is given.
      const requireFromLoader = createRequire(createRequire(args.path).resolve('@grpc/proto-loader'))
      const { Root } = requireFromLoader('protobufjs') as { Root: new () => ProtobufRoot }
      const json = JSON.stringify(new Root().loadSync(proto, { keepCase: true }).toJSON())
      return { contents: source.replace(LOAD_PROTO, `(0, proto_loader_1.fromJSON)(${json}, {`), loader: 'js' }
    })
  },
}
