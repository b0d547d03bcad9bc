import Foundation
import Hardware
import MmWire
import SvsmAbi
import EfiTypes

/// Why a guest-side SVSM call failed (Linux turns all of these into -EINVAL).
public enum SvsmCallError: Error, Equatable, Sendable, CustomStringConvertible {
    /// call_pending was still set after the VMGEXIT: the SVSM never ran the call.
    case notExecuted
    /// The GHCB MSR did not hold a VMPL response (0x017, upper half 0).
    case badGhcbResponse(UInt64)
    /// The SVSM answered with an error result.
    case failed(SvsmResultCode)
    /// INCOMPLETE or BUSY kept coming back (Linux would loop forever with IRQs off).
    case retriesExhausted(SvsmResultCode, attempts: Int)
    /// The caller's MM buffer is not guest RAM (a bug in the caller, caught before the call).
    case bufferNotInGuestMemory(GuestRegion)

    public var description: String {
        switch self {
        case .notExecuted: return "SVSM call not executed (call_pending still 1)"
        case .badGhcbResponse(let v): return "bad GHCB MSR response 0x\(String(v, radix: 16))"
        case .failed(let r): return "SVSM returned \(r.name)"
        case .retriesExhausted(let r, let n): return "SVSM kept answering \(r.name) (\(n) attempts)"
        case .bufferNotInGuestMemory(let r): return "the MM buffer \(r) is not guest RAM"
        }
    }
}

/// One finished SVSM call, for traces and statistics.
public struct SvsmCallRecord: Sendable {
    public var startNanoseconds: UInt64
    public var durationNanoseconds: UInt64
    public var apicId: UInt32
    public var caa: GuestPhysicalAddress
    public var call: SvsmCallId
    public var input: SvsmRegisters
    public var output: SvsmRegisters
    public var attempts: Int
    /// call_pending as the guest's xchg found it when the vCPU resumed (last attempt):
    /// 0 when the SVSM took the call, 1 when it never ran it.
    public var callPendingAtResume: UInt8
    public var error: SvsmCallError?
    /// For protocol 4: the MM function and the EFI status in the message.
    public var mmFunction: SmmVariableFunction?
    public var efiStatus: EfiStatus?
    /// The operation that made the call (`SvsmOperation.current` when it was issued).
    public var operation: SvsmOperation?
    /// Bytes that crossed the boundary for an MM request: the message the guest wrote into
    /// its MM buffer, and the reply it read back (0 for other calls).
    public var requestBytes = 0
    public var replyBytes = 0
    /// The modelled cost of one world switch (VMGEXIT to VMPL0 and back) when the call
    /// was made, and the modelled time of the call: one world switch per attempt.
    public var worldSwitchNanoseconds: UInt64 = 0
    public var modelledNanoseconds: UInt64 { worldSwitchNanoseconds &* UInt64(attempts) }

    /// A record made elsewhere than by this transport (serve-svsm's host side).
    public init(startNanoseconds: UInt64, durationNanoseconds: UInt64, apicId: UInt32, caa: GuestPhysicalAddress, call: SvsmCallId,
                input: SvsmRegisters, output: SvsmRegisters, attempts: Int, callPendingAtResume: UInt8, error: SvsmCallError?,
                mmFunction: SmmVariableFunction? = nil, efiStatus: EfiStatus? = nil) {
        self.startNanoseconds = startNanoseconds; self.durationNanoseconds = durationNanoseconds; self.apicId = apicId
        self.caa = caa; self.call = call; self.input = input; self.output = output; self.attempts = attempts
        self.callPendingAtResume = callPendingAtResume; self.error = error; self.mmFunction = mmFunction; self.efiStatus = efiStatus
    }

    public var resultName: String {
        if let e = error {
            if case .failed(let r) = e { return r.name }
            if case .retriesExhausted(let r, _) = e { return r.name }
            if case .notExecuted = e { return "NOT_EXECUTED" }
            if case .bufferNotInGuestMemory = e { return "BAD_BUFFER" }
            return "BAD_GHCB_RESPONSE"
        }
        return SvsmResultCode(rawValue: UInt32(truncatingIfNeeded: output.rax)).name
    }
}

/// Receives every SVSM call the guest makes (the `--trace` writer, statistics).
public protocol SvsmCallObserver: Sendable {
    func svsmCallCompleted(_ record: SvsmCallRecord)
    /// Whether this observer reads the record's start and duration. When none does, the
    /// transport leaves them 0 and reads no clock: two clock reads were a measurable part
    /// of every call, and only traces and call logs show times.
    var needsTiming: Bool { get }
}

extension SvsmCallObserver {
    public var needsTiming: Bool { true }
}

/// The guest's side of an SVSM call (Linux `svsm_perform_call_protocol`,
/// `svsm_perform_msr_protocol`, `svsm_issue_call`), over the GHCB MSR protocol: registers
/// in, call_pending set in the CAA, VMGEXIT, xchg(call_pending, 0), registers out.
public struct SvsmCallTransport: Sendable {
    /// What the transport is made of, behind one reference: every MM channel holds a
    /// transport and every call passes it down, and copying the parts themselves (two
    /// classes and two existentials) cost a retain and a release each time, 3.6 % of an
    /// MM round trip in a profile. The parts are fixed; a setter below makes new ones.
    private final class Parts: Sendable {
        let memory: GuestMemory
        let processor: Processor
        let hypervisor: any VmgexitHandler
        let maxRetries: Int
        let observer: (any SvsmCallObserver)?
        let worldSwitchNanoseconds: UInt64
        let spendsWorldSwitch: Bool
        init(memory: GuestMemory, processor: Processor, hypervisor: any VmgexitHandler, maxRetries: Int,
             observer: (any SvsmCallObserver)?, worldSwitchNanoseconds: UInt64, spendsWorldSwitch: Bool) {
            self.memory = memory; self.processor = processor; self.hypervisor = hypervisor; self.maxRetries = maxRetries
            self.observer = observer; self.worldSwitchNanoseconds = worldSwitchNanoseconds; self.spendsWorldSwitch = spendsWorldSwitch
        }
        func with(maxRetries: Int? = nil, observer: (any SvsmCallObserver)?? = nil, worldSwitchNanoseconds: UInt64? = nil,
                  spendsWorldSwitch: Bool? = nil) -> Parts {
            Parts(memory: memory, processor: processor, hypervisor: hypervisor, maxRetries: maxRetries ?? self.maxRetries,
                  observer: observer ?? self.observer, worldSwitchNanoseconds: worldSwitchNanoseconds ?? self.worldSwitchNanoseconds,
                  spendsWorldSwitch: spendsWorldSwitch ?? self.spendsWorldSwitch)
        }
    }
    private var parts: Parts

    public var memory: GuestMemory { parts.memory }
    public var processor: Processor { parts.processor }
    /// Who handles this guest's VMGEXITs.
    public var hypervisor: any VmgexitHandler { parts.hypervisor }
    /// Bound on INCOMPLETE/BUSY retries; Linux loops without bound.
    public var maxRetries: Int {
        get { parts.maxRetries }
        set { parts = parts.with(maxRetries: newValue) }
    }
    public var observer: (any SvsmCallObserver)? {
        get { parts.observer }
        set { parts = parts.with(observer: .some(newValue)) }
    }
    /// The modelled cost of one world switch (guest VMGEXIT → hypervisor → VMPL0 and back),
    /// charged to every attempt of every call as simulated time in the call record
    /// (`modelledNanoseconds`); with `spendsWorldSwitch` the calling thread also spins for
    /// it, so that wall-clock benchmarks feel it.
    public var worldSwitchNanoseconds: UInt64 {
        get { parts.worldSwitchNanoseconds }
        set { parts = parts.with(worldSwitchNanoseconds: newValue) }
    }
    public var spendsWorldSwitch: Bool {
        get { parts.spendsWorldSwitch }
        set { parts = parts.with(spendsWorldSwitch: newValue) }
    }

    public init(processor: Processor, hypervisor: any VmgexitHandler, maxRetries: Int = 16, observer: (any SvsmCallObserver)? = nil) {
        parts = Parts(memory: processor.memory, processor: processor, hypervisor: hypervisor, maxRetries: maxRetries,
                      observer: observer, worldSwitchNanoseconds: 0, spendsWorldSwitch: false)
    }

    /// Issues `call` on `vcpu` through the CAA at `caa` (which must be that vCPU's: the
    /// caller holds the vCPU, the model of IRQs off). Returns the output registers. For an
    /// MM request, `mm` names the buffer and what it carries, so that the record the
    /// observer gets says which function it was and what status came back.
    @discardableResult
    public func perform(_ call: SvsmCallId, rcx: UInt64 = 0, rdx: UInt64 = 0, r8: UInt64 = 0, r9: UInt64 = 0,
                        on vcpu: Vcpu, caa: GuestPhysicalAddress,
                        mm: (exchange: MmExchange, buffer: GuestPhysicalAddress)? = nil,
                        transferred: (request: Int, reply: Int) = (0, 0)) throws(SvsmCallError) -> SvsmRegisters {
        let input = SvsmRegisters(rax: call.rax, rcx: rcx, rdx: rdx, r8: r8, r9: r9)
        let timed = observer?.needsTiming ?? false
        let start = timed ? DispatchTime.now().uptimeNanoseconds : 0
        var attempts = 0
        var output = SvsmRegisters()
        var pending: UInt8 = 0
        var failure: SvsmCallError?
        while true {
            attempts += 1
            do {
                (output, pending) = try msrProtocol(input, on: vcpu.cpu, caa: caa)
            } catch {
                failure = error
                break
            }
            guard pending == 0 else { failure = .notExecuted; break }
            let result = SvsmResultCode(rawValue: UInt32(truncatingIfNeeded: output.rax))
            if output.rax == 0 { break }
            if result == .incomplete || result == .busy {
                if attempts > maxRetries { failure = .retriesExhausted(result, attempts: attempts); break }
                continue  // the same registers again, call_pending set again
            }
            failure = .failed(result)
            break
        }
        if spendsWorldSwitch && worldSwitchNanoseconds > 0 {
            // Busy-wait on top of the model's own work, as a vCPU in a world switch runs
            // nothing else.
            let until = DispatchTime.now().uptimeNanoseconds &+ worldSwitchNanoseconds &* UInt64(attempts)
            while DispatchTime.now().uptimeNanoseconds < until {}
        }
        if let o = observer {
            var record = SvsmCallRecord(startNanoseconds: start, durationNanoseconds: timed ? DispatchTime.now().uptimeNanoseconds - start : 0,
                                        apicId: vcpu.apicId, caa: caa, call: call, input: input, output: output,
                                        attempts: attempts, callPendingAtResume: pending, error: failure)
            record.operation = SvsmOperation.current
            record.worldSwitchNanoseconds = worldSwitchNanoseconds
            record.requestBytes = transferred.request
            record.replyBytes = failure == nil ? transferred.reply : 0
            if let mm {
                record.mmFunction = mm.exchange.function
                // The guest reads its own buffer's ReturnStatus, as the caller will.
                if failure == nil, let offset = mm.exchange.returnStatusOffset,
                   let raw = try? memory.readU64(mm.buffer.advanced(by: UInt64(offset))) {
                    record.efiStatus = EfiStatus(rawValue: raw)
                }
            }
            o.svsmCallCompleted(record)
        }
        if let f = failure { throw f }
        return output
    }

    /// `svsm_perform_msr_protocol`: save the GHCB MSR, request VMPL0, issue the call, check
    /// the response, restore the MSR. Returns the registers and call_pending as found on
    /// resume (non-zero: not executed).
    func msrProtocol(_ input: SvsmRegisters, on cpu: VirtualCpu, caa: GuestPhysicalAddress) throws(SvsmCallError) -> (SvsmRegisters, UInt8) {
        let saved = cpu.ghcbMsr
        cpu.ghcbMsr = GhcbMsr.vmplRequest(level: 0)
        let (pending, output) = issue(input, on: cpu, caa: caa)
        let response = cpu.ghcbMsr
        cpu.ghcbMsr = saved
        guard response & 0xfff == GhcbMsr.vmplResponse, response >> 32 == 0 else { throw .badGhcbResponse(response) }
        return (output, pending)
    }

    /// `svsm_issue_call`: registers in, call_pending = 1, VMGEXIT, xchg(call_pending, 0),
    /// registers out.
    func issue(_ input: SvsmRegisters, on cpu: VirtualCpu, caa: GuestPhysicalAddress) -> (pending: UInt8, output: SvsmRegisters) {
        cpu.registers = input
        try? memory.writeU8(caa.advanced(by: CallingArea.callPendingOffset), 1)
        processor.vmgexit(cpu, to: hypervisor)
        let pending = (try? memory.exchangeU8(caa.advanced(by: CallingArea.callPendingOffset), 0)) ?? 1
        return (pending, cpu.registers)
    }
}

/// An MM communicate buffer in guest memory, handed to the SVSM with SVSM_UEFI_MM_REQUEST
/// through a CAA: RCX = the buffer's GPA, RDX = its size. The Linux driver uses one per vCPU
/// with that vCPU's own CAA; the firmware model uses its runtime buffer with the CAA it
/// knows.
public struct SvsmMmChannel: MmBufferChannel {
    public let transport: SvsmCallTransport
    public let vcpu: Vcpu
    public let caa: GuestPhysicalAddress
    public let buffer: GuestPhysicalAddress
    public let bufferSize: Int

    public init(transport: SvsmCallTransport, vcpu: Vcpu, caa: GuestPhysicalAddress, buffer: GuestPhysicalAddress, bufferSize: Int) {
        self.transport = transport; self.vcpu = vcpu; self.caa = caa; self.buffer = buffer; self.bufferSize = bufferSize
    }

    public func exchange(_ bytes: [UInt8], replyLength: Int, describing exchange: MmExchange) throws(SvsmCallError) -> [UInt8] {
        let memory = transport.memory
        guard bytes.count <= bufferSize else { throw .bufferNotInGuestMemory(GuestRegion(start: buffer, length: UInt64(bytes.count))) }
        do { try memory.write(buffer, bytes) } catch { throw .bufferNotInGuestMemory(GuestRegion(start: buffer, length: UInt64(bytes.count))) }
        try transport.perform(.uefiMmRequest, rcx: buffer.rawValue, rdx: UInt64(bufferSize), on: vcpu, caa: caa,
                              mm: (exchange, buffer), transferred: (bytes.count, replyLength))
        let body = buffer.advanced(by: UInt64(MmCommunicateHeader.size))
        do { return try memory.read(body, count: replyLength) } catch {
            throw .bufferNotInGuestMemory(GuestRegion(start: body, length: UInt64(replyLength)))
        }
    }

    /// The headers and the payload written straight into the MM buffer, and the status and
    /// reply payload read straight out of it: the bytes `exchange` would carry, without the
    /// two arrays that join them and the one that holds the whole reply.
    public func variableExchange(_ function: SmmVariableFunction, payload: [UInt8]) throws(SvsmCallError) -> (EfiStatus, [UInt8]) {
        let memory = transport.memory
        let messageLength = SmmVariableHeader.size + payload.count
        let total = MmCommunicateHeader.size + messageLength
        let region = GuestRegion(start: buffer, length: UInt64(total))
        guard total <= bufferSize else { throw .bufferNotInGuestMemory(region) }
        do {
            try memory.withMutableBytes(buffer, count: total) { b in
                b.store(EfiGuid.smmVariableProtocol, at: MmCommunicateHeader.headerGuidOffset)
                b.storeLE(UInt64(messageLength), at: MmCommunicateHeader.messageLengthOffset)
                let smm = MmCommunicateHeader.size
                b.storeLE(function.rawValue, at: smm + SmmVariableHeader.functionOffset)
                b.storeLE(UInt64(0), at: smm + SmmVariableHeader.returnStatusOffset)
                payload.withUnsafeBytes { p in
                    if let s = p.baseAddress { (b.baseAddress! + smm + SmmVariableHeader.size).copyMemory(from: s, byteCount: p.count) }
                }
            }
        } catch { throw .bufferNotInGuestMemory(region) }
        try transport.perform(.uefiMmRequest, rcx: buffer.rawValue, rdx: UInt64(bufferSize), on: vcpu, caa: caa,
                              mm: (MmExchange(headerGuid: .smmVariableProtocol, function: function), buffer),
                              transferred: (total, messageLength))
        do {
            return try memory.withBytes(buffer, count: total) { b in
                let smm = MmCommunicateHeader.size
                let status = EfiStatus(rawValue: b.loadLE(UInt64.self, at: smm + SmmVariableHeader.returnStatusOffset))
                return (status, [UInt8](UnsafeRawBufferPointer(rebasing: b[(smm + SmmVariableHeader.size)...])))
            }
        } catch { throw .bufferNotInGuestMemory(region) }
    }
}
