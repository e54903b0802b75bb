$evm.log(:info, "ruby")
exit MIQ_OK
