// The whole model as one module for users of the library product: each layer is its own
// target (see Package.swift and ARCHITECTURE.md); this re-exports them all.
@_exported import Driver
@_exported import EfiTypes
@_exported import Efivarfs
@_exported import Guest
@_exported import Hardware
@_exported import Host
@_exported import MmWire
@_exported import PeerVariableStores
@_exported import Platform
@_exported import Svsm
@_exported import SvsmAbi
@_exported import Trace
@_exported import VariableService
