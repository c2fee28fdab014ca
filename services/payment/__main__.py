from services.payment.app import service

service.run()
